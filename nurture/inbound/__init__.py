"""What comes back after delivery: bounces and complaints, read (notices), acted on (feedback) and taken
in by SMTP (receiver)."""
