# SPDX-License-Identifier: GPL-3.0-or-later
"""Registry fixture: a small HTTP app with the PRPM registry's runtime contract.

    python3 app.py migrate   # create the schema (what `npm run migrate` does)
    python3 app.py serve     # serve on $PORT (what `npm start` does)

API: GET /health; PUT/GET /api/v1/packages/{name}; GET /api/v1/packages.
FIXTURE_BROKEN=1 makes a variant that never becomes healthy (rollback tests).
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.pool
import redis

NAME = re.compile(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]{0,213}$")
MAX_BODY = 1024 * 1024
CACHE_TTL = 60
VERSION = os.environ.get("FIXTURE_VERSION", "dev")
BROKEN = os.environ.get("FIXTURE_BROKEN", "0") == "1"


def require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"fixture: {name} is required")
    return value


def migrate(database_url: str) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS packages ("
            " name text PRIMARY KEY, body jsonb NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(
            "INSERT INTO schema_migrations (version) VALUES ('001_packages') ON CONFLICT DO NOTHING"
        )
    print("fixture: migrations applied", flush=True)


class App:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.pool = psycopg2.pool.ThreadedConnectionPool(1, 5, database_url)
        self.cache = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def query(self, sql: str, args: tuple = (), fetch: bool = True):
        conn = self.pool.getconn()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if fetch else cur.rowcount
        except psycopg2.OperationalError:
            self.pool.putconn(conn, close=True)
            raise
        finally:
            if not conn.closed:
                self.pool.putconn(conn)

    def health(self) -> tuple[int, dict]:
        services = {"database": "ok", "redis": "ok"}
        try:
            self.query("SELECT count(*) FROM packages")
        except psycopg2.Error:
            services["database"] = "error"
        try:
            self.cache.ping()
        except redis.RedisError:
            services["redis"] = "error"
        ok = not BROKEN and all(v == "ok" for v in services.values())
        body = {"status": "ok" if ok else "degraded", "services": services, "version": VERSION}
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body


def make_handler(app: App):
    class Handler(BaseHTTPRequestHandler):
        server_version = "prpm-registry-fixture"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args) -> None:  # one JSON line per request
            print(
                json.dumps(
                    {"request": self.requestline, "status": args[1] if len(args) > 1 else None}
                ),
                flush=True,
            )

        def send_json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def package_name(self) -> str | None:
            prefix = "/api/v1/packages/"
            path = urllib.parse.urlsplit(self.path).path
            if not path.startswith(prefix):
                return None
            return urllib.parse.unquote(path[len(prefix) :])

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path == "/health":
                    self.send_json(*app.health())
                elif path.rstrip("/") == "/api/v1/packages":
                    names = [r[0] for r in app.query("SELECT name FROM packages ORDER BY name")]
                    self.send_json(HTTPStatus.OK, {"count": len(names), "names": names})
                elif (name := self.package_name()) is not None:
                    self.get_package(name)
                else:
                    self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            except psycopg2.Error as exc:
                self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc).strip()})

        def get_package(self, name: str) -> None:
            key = f"pkg:{name}"
            try:
                cached = app.cache.get(key)
            except redis.RedisError:
                cached = None
            if cached is not None:
                self.send_json(HTTPStatus.OK, json.loads(cached))
                return
            rows = app.query("SELECT body FROM packages WHERE name = %s", (name,))
            if not rows:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"package {name} not found"})
                return
            try:
                app.cache.setex(key, CACHE_TTL, json.dumps(rows[0][0]))
            except redis.RedisError:
                pass
            self.send_json(HTTPStatus.OK, rows[0][0])

        def do_PUT(self) -> None:
            name = self.package_name()
            if name is None or not NAME.match(name):
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid package name"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": "body required (<= 1 MiB)"})
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
                return
            try:
                rows = app.query(
                    "INSERT INTO packages (name, body) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
                    " RETURNING (xmax = 0)",
                    (name, json.dumps(body)),
                )
            except psycopg2.Error as exc:
                self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc).strip()})
                return
            try:
                app.cache.delete(f"pkg:{name}")
            except redis.RedisError:
                pass
            created = rows[0][0]
            self.send_json(HTTPStatus.CREATED if created else HTTPStatus.OK, {"name": name})

    return Handler


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "serve"
    database_url = require_env("DATABASE_URL")
    if command == "migrate":
        migrate(database_url)
        return 0
    require_env("JWT_SECRET")
    app = App(database_url, require_env("REDIS_URL"))
    port = int(os.environ.get("PORT", "3111"))
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(app))  # noqa: S104
    print(f"fixture {VERSION}: listening on :{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
