"""WeCom (企业微信): the intelligent robot for groups, a self-built app for people and contacts."""
