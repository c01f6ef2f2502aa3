"""Record the GraphQL golden capture: graphql-core (the reference implementation) behind an
aiohttp server on 127.0.0.1:21610 (/graphql, GraphQL over HTTP: POST JSON, GET ?query=,
batches as JSON lists; /search, a JSON API that is not GraphQL), queried by curl and
requests; tcpdump captures port 21610.

    sudo /tmp/v/bin/python tests/golden/protocols/gql/record.py

Writes basic.pcap and basic.client.json: per request, the client, the HTTP method, the
GraphQL request it sent (document, operationName, variables) and the status and JSON it got
back, in order. Then `python -m tests.golden.protocols.dissect
tests/golden/protocols/gql/basic.pcap --write` makes the expected calls, to be reviewed
against the client file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import serving, tcpdump, write_client_facts  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21610
URL = f"http://127.0.0.1:{PORT}/graphql"

SDL = """
type Query { user(id: ID!): User  users: [User!]! }
type Mutation { addUser(name: String!): User! }
type User { id: ID! name: String! }
"""

NAMED_QUERY = "query GetUser($id: ID!) {\n  user(id: $id) { id name }\n}"
MUTATION = "mutation AddUser($name: String!) { addUser(name: $name) { id name } }"
ANONYMOUS = "{ users { name } }"
SYNTAX_ERROR = 'query Broken { user(id: "1") { name }'  # the last "}" is missing
SEVERAL = """# Two operations and a fragment; operationName picks the mutation.
fragment UserFields on User { id name }
query First { users { ...UserFields } }
mutation Second { addUser(name: "zed") { ...UserFields } }
"""
BATCH = [
    {"query": "query Names { users { name } }", "operationName": "Names"},
    {"query": '{ user(id: "2") { name } }'},
]


# ------------------------------------------------------------------ server


def serve() -> None:
    from aiohttp import web
    from graphql import build_schema, graphql_sync

    schema = build_schema(SDL)
    users = [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]

    def add_user(_root, _info, name):
        users.append({"id": str(len(users) + 1), "name": name})
        return users[-1]

    root = {
        "user": lambda _info, id: next((u for u in users if u["id"] == id), None),
        "users": lambda _info: users,
        "addUser": lambda _info, name: add_user(None, _info, name),
    }

    def execute(req: dict) -> tuple[int, dict]:
        result = graphql_sync(
            schema,
            req.get("query", ""),
            root_value=root,
            variable_values=req.get("variables"),
            operation_name=req.get("operationName"),
        )
        out = result.formatted
        return (400 if result.data is None and result.errors else 200), out

    async def graphql_http(request: web.Request) -> web.Response:
        if request.method == "GET":
            req = dict(request.query)
            if "variables" in req:
                req["variables"] = json.loads(req["variables"])
            status, out = execute(req)
            return web.json_response(out, status=status)
        doc = await request.json()
        if isinstance(doc, list):
            return web.json_response([execute(d)[1] for d in doc])
        status, out = execute(doc)
        return web.json_response(out, status=status)

    async def search(request: web.Request) -> web.Response:
        doc = await request.json()
        return web.json_response({"results": [], "query": doc.get("query")})

    app = web.Application()
    app.router.add_route("*", "/graphql", graphql_http)
    app.router.add_post("/search", search)
    web.run_app(app, host="127.0.0.1", port=PORT, print=None)


# ----------------------------------------------------------------- clients


def curl(method: str, url: str, body: dict | list | None = None) -> dict:
    args = ["curl", "-s", "-w", "\n%{http_code}", "-X", method, url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    text, status = out.rsplit("\n", 1)
    return {"status": int(status), "response": json.loads(text)}


def run_clients() -> list[dict]:
    import requests

    facts: list[dict] = []

    def note(client: str, method: str, request: dict | list, got: dict, path="/graphql"):
        facts.append({"client": client, "method": method, "path": path, "request": request, **got})

    named = {"query": NAMED_QUERY, "operationName": "GetUser", "variables": {"id": "1"}}
    note("curl", "POST", named, curl("POST", URL, named))

    anonymous = {"query": ANONYMOUS}
    note("curl", "GET", anonymous, curl("GET", f"{URL}?{urlencode(anonymous)}"))

    with requests.Session() as s:

        def post(doc, path="/graphql"):
            r = s.post(f"http://127.0.0.1:{PORT}{path}", json=doc, timeout=10)
            return {"status": r.status_code, "response": r.json()}

        mutation = {"query": MUTATION, "operationName": "AddUser", "variables": {"name": "lin"}}
        note("requests", "POST", mutation, post(mutation))
        broken = {"query": SYNTAX_ERROR}
        note("requests", "POST", broken, post(broken))
        several = {"query": SEVERAL, "operationName": "Second"}
        note("requests", "POST", several, post(several))
        note("requests", "POST", BATCH, post(BATCH))
        search = {"query": "red shoes"}
        note("requests", "POST", search, post(search, "/search"), path="/search")
    return facts


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve()
        return
    for tool in ("tcpdump", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"record.py: {tool} is not installed (apt-get install {tool})")
    pcap = HERE / "basic.pcap"
    with serving([sys.executable, __file__, "serve"], PORT):
        with tcpdump(pcap, f"tcp port {PORT}", settle=0.3, drain=0.5):
            facts = run_clients()
    write_client_facts(HERE / "basic.client.json", facts, pcap)


if __name__ == "__main__":
    main()
