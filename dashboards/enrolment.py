"""Enrolment for a district's admin: residents, their homes' gateways and sensors, list uploads.

Pages under /enrol and the JSON API under /api/v1 share the registry's code paths: a resident is
checked as an enrolment file's row and written by the import's own functions
(registry.residents_edit, registry.residents_import), in one transaction, refused as a whole
with every problem named (field, Korean reason, English beside it). Only role `admin`; every
object is looked up within the dongs of the admin's district (another district's is a 404).
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dashboards.deps import get_deps, language
from dashboards.enrolment_access import EnrolmentDenied
from dashboards.enrolment_api import enrolment_api_router
from dashboards.enrolment_pages import enrolment_pages_router
from dashboards.enrolment_text import word
from dashboards.routes import render


def install_enrolment(app: FastAPI) -> None:
    """Mount the enrolment API and pages, and answer their refusals (403 / 404) in Korean first:
    JSON for the API, a page otherwise."""

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EnrolmentDenied)
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"detail": word("ko", exc.key), "detail_en": word("en", exc.key), "errors": []},
                status_code=exc.status,
            )
        lang = language(request)
        return render(
            request, get_deps(request), lang, "error.html", status_code=exc.status,
            message=word(lang, exc.key),
        )  # fmt: skip

    app.add_exception_handler(EnrolmentDenied, denied)
    app.include_router(enrolment_api_router())
    app.include_router(enrolment_pages_router())
