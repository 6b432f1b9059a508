"""WeCom's cards: template cards (button_interaction) and markdown messages."""
