"""Telephony call centre and voice bot for French départements autonomy services."""
