"""DingTalk's cards: the generic card template's parameter map and the robot's text messages."""
