"""The adapter kit: everything a platform adapter would otherwise write again.

A platform brings its signature and crypto, its parser into neutral events, its API client (on
`client.ApiClient`), its sender (on `sender.PlatformSender`), its org source and its card templates.
The kit brings the inbound pipeline (`pipeline`), the webhook plumbing (`webhook`), the client
base, the base sender and the generic org sync (`orgsync`).
"""
