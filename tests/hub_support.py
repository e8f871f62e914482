"""A proxy for the JupyterHub test that keeps routes in memory: the hub needs one, and
configurable-http-proxy is a node program this machine need not have. The test talks
to the hub and to the user's server directly."""

from __future__ import annotations

from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    should_start = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.routes: dict = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)
