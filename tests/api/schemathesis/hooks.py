"""Schemathesis hooks for the API suite's fuzz test (tests/api/openapi_fuzz.rs).

Generated usernames almost never name a registered user, so on their own the fuzzer would
exercise little beyond the 404s. These hooks draw, some of the time, from the users the test
registered before the run (MINITWIT_FUZZ_USERS, a JSON list), both for the `{username}` in
the path and for a follow's target, so the success paths are fuzzed too. They draw through
Hypothesis, which keeps the run reproducible from its seed.
"""

import json
import os

import schemathesis
from hypothesis import strategies as st

USERS = json.loads(os.environ["MINITWIT_FUZZ_USERS"])


def sometimes_registered(value):
    """The generated value, or a registered user's name."""
    return st.one_of(st.just(value), st.sampled_from(USERS))


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters or "username" not in path_parameters:
        return st.just(path_parameters)
    return sometimes_registered(path_parameters["username"]).map(
        lambda name: {**path_parameters, "username": name}
    )


@schemathesis.hook
def flatmap_body(context, body):
    """A follow or unfollow of a registered user, some of the time."""
    if not isinstance(body, dict):
        return st.just(body)
    targets = [key for key in ("follow", "unfollow") if isinstance(body.get(key), str)]
    if not targets:
        return st.just(body)
    key = targets[0]
    return sometimes_registered(body[key]).map(lambda name: {**body, key: name})
