"""A small client of Label Studio's REST API (aiohttp): only the calls the review loop makes.

Label Studio (PyPI ``label-studio``) is where people label the reviews the pipeline picks.
Its own client (``label-studio-sdk`` 2.1.2) would add 30 packages to the pipeline's
environment (opencv-python-headless, nltk, lxml, faker, httpx, ...) and downgrade numpy from
2.4 to 2.2 (``uv pip install --dry-run``); the review loop makes a handful of calls, so it
speaks HTTP itself, with the aiohttp the pipeline already has:

* ``GET /health``;
* ``GET /api/projects?title=`` and ``POST /api/projects`` (the project, found by title);
* ``POST /api/projects/{id}/import`` (tasks, each with the model's prediction);
* ``GET /api/tasks?project=`` (paged: which review ids the project already holds);
* ``GET /api/projects/{id}/export?exportType=JSON`` (the tasks that have annotations).

It authenticates with a token (``Authorization: Token ...``: a legacy API token, which the
organisation must allow, see ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``; or a personal access
token, sent the same way). HTTP errors raise ``aiohttp.ClientResponseError`` (a 5xx or a
dropped connection is retriable by :func:`stream.retry.retriable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Self

import aiohttp

from stream.errors import ConfigurationError, redact_url
from stream.events import LABELS

__all__ = [
    "CHOICES",
    "LABEL_CONFIG",
    "LabelStudio",
    "add_review_ids",
    "choice_label",
    "prediction_result",
]

#: The three choices people pick from, in class order (-1, 0, 1).
CHOICES: Final = tuple(name.capitalize() for name in LABELS.values())

#: The labeling interface: the review's text and three single choices.
LABEL_CONFIG: Final = (
    "<View>\n"
    '  <Header value="Product category: $product_category"/>\n'
    '  <Text name="text" value="$review_text"/>\n'
    '  <Choices name="sentiment" toName="text" choice="single" showInLine="true">\n'
    + "".join(f'    <Choice value="{c}"/>\n' for c in CHOICES)
    + "  </Choices>\n"
    "</View>\n"
)


def prediction_result(label: int) -> list[dict[str, Any]]:
    """The ``result`` of a pre-annotation (or an annotation) that picks class ``label``."""
    return [
        {
            "from_name": "sentiment",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [CHOICES[label + 1]]},
        }
    ]


def choice_label(result: Sequence[Mapping[str, Any]]) -> int | None:
    """The class (-1/0/1) an annotation's ``result`` picked (None when it picked none)."""
    for item in result:
        if item.get("from_name") != "sentiment":
            continue
        choices = item.get("value", {}).get("choices") or ()
        for choice in choices:
            if choice in CHOICES:
                return CHOICES.index(choice) - 1
    return None


class LabelStudio:
    """The API of one Label Studio server. Use ``async with LabelStudio(url, token) as ls``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Token {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._http().request(method, self.url + path, **kwargs) as resp:
            resp.raise_for_status()
            if resp.status == 204:
                return None
            try:
                return await resp.json(content_type=None)
            except ValueError:  # a login page, a proxy's page: not Label Studio's API
                raise ConfigurationError(
                    f"{method} {redact_url(self.url + path)} answered {resp.status} with a body "
                    "that is not JSON: is SENTIMENT_REVIEW__URL Label Studio's address?"
                ) from None

    async def find_project(self, title: str) -> dict[str, Any] | None:
        """The project named ``title`` (the lowest id when there are several), or None."""
        found = await self._call("GET", "/api/projects", params={"title": title, "page_size": 100})
        projects = found.get("results", found) if isinstance(found, dict) else found
        matching = [p for p in projects if p.get("title") == title]
        return min(matching, key=lambda p: int(p["id"])) if matching else None

    async def create_project(self, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        body = {"title": title, "label_config": label_config, **fields}
        created: dict[str, Any] = await self._call("POST", "/api/projects", json=body)
        return created

    async def import_tasks(self, project: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create ``tasks`` (each ``{"data": ..., "predictions": [...]}``); returns their ids."""
        answer = await self._call(
            "POST",
            f"/api/projects/{project}/import",
            params={"return_task_ids": "true"},
            json=list(tasks),
        )
        return [int(t) for t in answer.get("task_ids", [])]

    async def task_page(self, project: int, page: int, page_size: int) -> list[dict[str, Any]]:
        """Page ``page`` (from 1) of ``project``'s tasks; fewer than ``page_size`` (or none,
        past the last page) at the end."""
        try:
            answer = await self._call(
                "GET",
                "/api/tasks",
                params={"project": project, "page": page, "page_size": page_size},
            )
        except aiohttp.ClientResponseError as err:
            if err.status == 404:  # past the last page
                return []
            raise
        tasks: list[dict[str, Any]] = (
            answer.get("tasks", []) if isinstance(answer, dict) else answer
        )
        return tasks

    async def tasks(self, project: int, page_size: int = 500) -> list[dict[str, Any]]:
        """Every task of ``project`` (read page by page)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            tasks = await self.task_page(project, page, page_size)
            out.extend(tasks)
            if len(tasks) < page_size:
                return out
            page += 1

    async def task_review_ids(self, project: int, page_size: int = 500) -> dict[str, int]:
        """review_id -> task id of every task of ``project`` (the first, were there two)."""
        out: dict[str, int] = {}
        add_review_ids(out, await self.tasks(project, page_size))
        return out

    async def annotated_tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of ``project`` that has at least one annotation, with them."""
        answer = await self._call(
            "GET",
            f"/api/projects/{project}/export",
            params={"exportType": "JSON", "download_all_tasks": "false"},
        )
        return list(answer)

    async def annotate(self, task: int, label: int, **fields: Any) -> dict[str, Any]:
        """Submit an annotation of ``task`` choosing class ``label`` (what the labeling
        interface does when a person presses Submit)."""
        body = {"result": prediction_result(label), "was_cancelled": False, **fields}
        created: dict[str, Any] = await self._call(
            "POST", f"/api/tasks/{task}/annotations", json=body
        )
        return created


def add_review_ids(held: dict[str, int], tasks: Sequence[Mapping[str, Any]]) -> None:
    """Add each task's ``review_id -> task id`` to ``held`` (the first task of a review wins)."""
    for task in tasks:
        review_id = task.get("data", {}).get("review_id")
        if isinstance(review_id, str):
            held.setdefault(review_id, int(task["id"]))
