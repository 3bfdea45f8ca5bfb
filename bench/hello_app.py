"""The framework's ceiling: a bare FastAPI app under the same uvicorn flags as the shop."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict:
    return {"hello": "world"}
