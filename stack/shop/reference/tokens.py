import jwt


def verify_token(token: str, secret: str) -> dict:
    """The token's claims when it is genuine and current; raise jwt.InvalidTokenError if not."""
    return jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "iat", "sub"]})
