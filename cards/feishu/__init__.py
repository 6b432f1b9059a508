"""Feishu's cards: the JSON 2.0 card templates and their renderer."""
