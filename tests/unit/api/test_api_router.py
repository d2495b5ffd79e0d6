"""Router: api-version checks, 404/405, listeners, path parameters and error rendering."""

from __future__ import annotations

import asyncio
import logging

import pytest

from firmware.api import versions
from firmware.api.model import ApiRequest, ApiResponse
from firmware.api.router import Router
from firmware.errors import NotFound, TooManyRequests

V = versions.LATEST


def dispatch(router: Router, method: str, path: str, **kwargs) -> ApiResponse:
    query = kwargs.pop("query", {"api-version": V})
    return asyncio.run(router.dispatch(ApiRequest(method, path, query=query, **kwargs)))


async def echo(request: ApiRequest, **params: str) -> ApiResponse:
    return ApiResponse(body={"params": params, "listener": request.listener})


@pytest.fixture
def router() -> Router:
    r = Router()
    r.add("GET", "/modules", echo)
    r.add("POST", "/modules", echo)
    r.add("GET", "/modules/{name}", echo)
    r.add("POST", "/modules/{name}/genid/{genid}/sign", echo, listeners=("workload",))
    r.add("GET", "/modules/special", echo)
    return r


def test_path_parameters_are_decoded_per_segment(router: Router) -> None:
    answer = dispatch(router, "GET", "/modules/a%2Fb")
    assert answer.status == 200
    assert answer.json() == {"params": {"name": "a/b"}, "listener": "mgmt"}


def test_literal_segment_wins_over_parameter(router: Router) -> None:
    router.add("DELETE", "/modules/{name}", echo)
    assert dispatch(router, "GET", "/modules/special").json()["params"] == {}


def test_missing_api_version_is_400_listing_supported(router: Router) -> None:
    answer = dispatch(router, "GET", "/modules", query={})
    assert answer.status == 400
    message = answer.json()["message"]
    assert "api-version" in message
    assert "2018-06-28" in message and "2022-08-03" in message


def test_unknown_api_version_is_400_naming_it(router: Router) -> None:
    answer = dispatch(router, "GET", "/modules", query={"api-version": "2099-01-01"})
    assert answer.status == 400
    assert "'2099-01-01'" in answer.json()["message"]
    assert "2020-07-07" in answer.json()["message"]


def test_unknown_path_is_404(router: Router) -> None:
    answer = dispatch(router, "GET", "/nothing/here")
    assert answer.status == 404
    assert answer.json() == {"message": "no such path: /nothing/here"}
    assert dispatch(router, "GET", "/modules//").status == 404
    assert dispatch(router, "GET", "modules").status == 404


def test_one_trailing_slash_names_the_same_route(router: Router) -> None:
    # edgeAgent lists and creates identities at /identities/ (its generated client's paths)
    assert dispatch(router, "GET", "/modules/").status == dispatch(router, "GET", "/modules").status
    assert dispatch(router, "GET", "/modules/").json() == dispatch(router, "GET", "/modules").json()
    assert dispatch(router, "GET", "/").status == 404


def test_wrong_method_is_405_with_allow(router: Router) -> None:
    answer = dispatch(router, "DELETE", "/modules")
    assert answer.status == 405
    assert ("Allow", "GET, POST") in answer.headers
    assert "DELETE" in answer.json()["message"]


def test_routes_only_answer_on_their_listeners(router: Router) -> None:
    path = "/modules/m/genid/1/sign"
    assert dispatch(router, "POST", path, listener="workload:m").status == 200
    assert dispatch(router, "POST", path, listener="mgmt").status == 404
    assert dispatch(router, "GET", "/modules", listener="workload:m").status == 404


def test_console_may_use_every_management_route(router: Router) -> None:
    assert dispatch(router, "GET", "/modules/x", listener="console").json()["listener"] == "console"
    assert dispatch(router, "POST", "/modules/m/genid/1/sign", listener="console").status == 404


def test_every_route_answers_at_every_supported_version(router: Router) -> None:
    # edgeAgent falls back as far as 2018-06-28 and asks its routes there
    for version in versions.SUPPORTED:
        assert dispatch(router, "GET", "/modules", query={"api-version": version}).status == 200


def test_edgekeeper_error_is_rendered_with_its_status(router: Router) -> None:
    async def missing(request: ApiRequest, name: str) -> ApiResponse:
        raise NotFound(f"module {name} does not exist", hint="see `edgekeeper list`")

    router.add("GET", "/things/{name}", missing)
    answer = dispatch(router, "GET", "/things/x")
    assert answer.status == 404
    assert answer.json() == {"message": "module x does not exist (see `edgekeeper list`)"}


def test_other_exception_is_500_internal_error_and_logged(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: ApiRequest) -> ApiResponse:
        raise ZeroDivisionError("secret detail")

    router.add("GET", "/broken", broken)
    with caplog.at_level(logging.ERROR, logger="edgekeeper.api"):
        answer = dispatch(router, "GET", "/broken")
    assert answer.status == 500
    assert answer.json() == {"message": "internal error"}
    assert any(
        record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records
    )


def test_a_repeated_internal_error_logs_its_traceback_once(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: ApiRequest) -> ApiResponse:
        raise ZeroDivisionError("secret detail")

    async def other(request: ApiRequest) -> ApiResponse:
        raise KeyError("x")

    router.add("GET", "/broken", broken)
    router.add("GET", "/other", other)
    with caplog.at_level(logging.ERROR, logger="edgekeeper.api"):
        statuses = [dispatch(router, "GET", path).status for path in ("/broken",) * 3]
        statuses.append(dispatch(router, "GET", "/other").status)
    assert statuses == [500] * 4
    with_traceback = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert with_traceback == [ZeroDivisionError, KeyError]
    repeats = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert len(repeats) == 2
    assert all("ZeroDivisionError at" in line and "again" in line for line in repeats)


def test_bad_json_body_is_400_naming_the_problem(router: Router) -> None:
    async def takes_json(request: ApiRequest) -> ApiResponse:
        return ApiResponse(body=request.json_object())

    router.add("PUT", "/json", takes_json)
    answer = dispatch(router, "PUT", "/json", body=b'{"a": ')
    assert answer.status == 400
    assert "not valid JSON" in answer.json()["message"]
    assert "line 1" in answer.json()["message"]
    assert (
        dispatch(router, "PUT", "/json", body=b"")
        .json()["message"]
        .startswith("request body is empty")
    )
    assert "an array" in dispatch(router, "PUT", "/json", body=b"[1]").json()["message"]
    assert dispatch(router, "PUT", "/json", body=b"\xff\xfe").status == 400
    assert dispatch(router, "PUT", "/json", body=b'{"a": 1}').json() == {"a": 1}


def test_undecodable_percent_escape_is_400(router: Router) -> None:
    assert dispatch(router, "GET", "/modules/%ff").status == 400


def test_duplicate_and_malformed_routes_are_refused(router: Router) -> None:
    with pytest.raises(ValueError, match="already registered"):
        router.add("GET", "/modules", echo)
    with pytest.raises(ValueError, match="whole segment"):
        router.add("GET", "/a/x{b}", echo)


def test_versions_list_matches_iot_edge() -> None:
    assert versions.SUPPORTED[0] == "2018-06-28"
    assert versions.LATEST == "2022-08-03"


def test_body_that_cannot_be_encoded_is_500(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async def odd(request: ApiRequest) -> ApiResponse:
        return ApiResponse(body={"when": object()})

    router.add("GET", "/odd", odd)
    with caplog.at_level(logging.ERROR, logger="edgekeeper.api"):
        answer = dispatch(router, "GET", "/odd")
    assert (answer.status, answer.json()) == (500, {"message": "internal error"})
    assert caplog.records


def test_json_body_is_encoded_once_with_its_content_type(router: Router) -> None:
    answer = dispatch(router, "GET", "/modules")
    assert isinstance(answer.body, bytes)
    assert answer.content_type() == "application/json"
    assert answer.json() == {"params": {}, "listener": "mgmt"}


def test_a_spent_budget_answers_429_with_retry_after(router: Router) -> None:
    async def busy(request: ApiRequest) -> ApiResponse:
        raise TooManyRequests("budget spent", retry_after_s=2.2)

    router.add("GET", "/busy", busy)
    answer = dispatch(router, "GET", "/busy")
    assert answer.status == 429
    assert ("Retry-After", "3") in answer.headers
