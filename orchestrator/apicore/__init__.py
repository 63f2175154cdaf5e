"""The HTTP API client core: auth strategies, retries as data, rate limits, capped answers.

A leaf below the service clients (Imagen, Imagga, imgix); it imports only the product's root
error and the retry policy. Import from its modules (`apicore.client`, `apicore.errors`,
`apicore.auth`): the package itself loads nothing, so code that only needs an error class
does not pay for aiohttp.
"""
