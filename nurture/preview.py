"""Render a template for a real lead without storing or sending anything."""

from __future__ import annotations

from nurture import content
from nurture.feeds import load_catalog
from nurture.render import Rendered, Renderer
from nurture.settings import Settings
from nurture.store import Store
from nurture.tokens import Signer
from nurture.urls import Urls

PREVIEW_SEND = 0  # tokens of a preview name no send, so its links record nothing


def render_preview(settings: Settings, store: Store, template: str, email: str) -> Rendered:
    lead = store.lead_by_email(email)
    assert lead.id is not None
    catalog = load_catalog(settings.feeds_file)
    items = store.new_items(lead.id, catalog.feeds_for(lead.interests, lead.industry),
                            settings.program.items_per_digest)
    urls = Urls(settings.base_url, Signer(settings.secret_key))
    variables = content.context(settings, lead, items, unsubscribe_url=urls.unsubscribe(lead.id),
                                preferences_url=urls.preferences(lead.id))
    renderer = Renderer(settings.templates_dir, settings.program.default_locale)
    return renderer.render(template, lead.locale, variables,
                           url_for=lambda link: urls.click(PREVIEW_SEND, link), pixel_url=urls.pixel(PREVIEW_SEND))
