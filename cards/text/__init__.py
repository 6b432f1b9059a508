"""The console's plain-text form of a card."""
