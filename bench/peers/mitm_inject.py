# mitm_inject.py -- mitmdump addon for bench/run.sh: in every request header value, the
# placeholder (BENCH_PLACEHOLDER) becomes the real secret (BENCH_SECRET), as egressd does.
import os

PLACEHOLDER = os.environ["BENCH_PLACEHOLDER"]
SECRET = os.environ["BENCH_SECRET"]


def request(flow):
    h = flow.request.headers
    for name, value in list(h.items(multi=True)):
        if PLACEHOLDER in value:
            h[name] = value.replace(PLACEHOLDER, SECRET)
