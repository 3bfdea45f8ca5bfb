"""``GET /avatar?name=Ada``: the avatar (SVG) a signup page shows for a name.

Rendering costs CPU, so the service remembers rendered avatars — how, and how many, is lab 01's
``avatar_cache`` exercise (shop/exercises.py): ``cached_avatar(name, render)``.
"""

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from shop import avatars
from shop.api.contract import errors
from shop.errors import ExerciseError

router = APIRouter(tags=["avatars"])


class AvatarOut(BaseModel):
    name: str
    svg: str


@router.get("/avatar", response_model=AvatarOut, responses=errors(501))
async def avatar(request: Request, name: str = Query(min_length=1, max_length=100)):
    svg = await request.app.state.exercises.call("avatar_cache", "cached_avatar", name, avatars.render)
    if not isinstance(svg, str):
        raise ExerciseError(f"cached_avatar() returned {type(svg).__name__}, not the SVG text render(name) gives")
    return {"name": name, "svg": svg}
