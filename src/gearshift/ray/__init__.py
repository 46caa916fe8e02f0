"""gearshift on Ray Serve (`pip install 'gearshift[ray]'`): `serve run gearshift.ray:app
pool=POOL.yaml policy=POLICY.json nodes=N`. See `gearshift.ray.app`."""

from gearshift.ray.app import app, build

__all__ = ["app", "build"]
