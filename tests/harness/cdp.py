#!/usr/bin/python3
"""cdp.py: drive headless Chromium over its DevTools protocol, for the
real-browser tests (no npm: Debian's chromium and python3-websocket).

usage:
  cdp.py check
      exit 0 when Chromium and the websocket module are there, else
      print why not and exit 69
  cdp.py show URL [--expect-text TEXT]
      load URL; print {url, status, headers, text, buttons, user_agent}
  cdp.py click URL --button-text TEXT [--expect-text TEXT] [--tabs N]
                   [--between CMD]
      load URL in N tabs (default 1) first, then in each tab in turn
      click, with the mouse, the button whose text is TEXT (whitespace
      collapsed) and wait for the page the click leads to; after each
      click but the last run CMD (sh -c) if given, which must exit 0.
      Prints {user_agent, browser, url, method, status, text, pages}:
      the top-level fields describe the last tab's resulting page,
      pages[] each tab's (before_text, url, method, status, statuses,
      headers, text).
  cdp.py fill URL --field NAME=VALUE ... --button-text TEXT
                  [--expect-text TEXT]
      load URL, type each VALUE into the form field named NAME (focus,
      then keyboard input, as a person would), click the button whose
      text is TEXT with the mouse and wait for the page it leads to.
      Prints {user_agent, browser, before_text, before_status, url,
      method, status, statuses, headers, text}.

Options before the command: --timeout S (overall, default 25),
--chromium PATH (default $CHROMIUM, /usr/bin/chromium, or chromium on
PATH).

The JSON goes to standard output (also when an expectation fails, to
help the reader); errors to standard error, one line starting
"cdp.py: ". Exit status: 0 done, 1 a page was not as expected or a
step failed, 64 usage, 69 Chromium or the websocket module missing or
Chromium would not start. Chromium runs with a throwaway profile and
is always killed, and its profile removed, before exit.
"""
import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

EX_USAGE = 64
EX_UNAVAILABLE = 69


class Failure(Exception):
    """A step failed: exit 1 (or code) with this message."""

    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code


class Timeout(Failure):
    def __init__(self, what):
        super().__init__("timed out " + what)


def find_chromium(explicit):
    """The Chromium program: --chromium, $CHROMIUM, /usr/bin/chromium or
    on PATH."""
    chosen = explicit or os.environ.get("CHROMIUM")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise Failure("no Chromium at %s" % chosen, EX_UNAVAILABLE)
        return chosen
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise Failure("no Chromium: install the chromium package",
        EX_UNAVAILABLE)


def need_websocket():
    try:
        importlib.import_module("websocket")    # python3-websocket
    except ImportError:
        raise Failure("no websocket module for %s: install python3-websocket"
            % sys.executable, EX_UNAVAILABLE)


# ---- the browser process ---------------------------------------------------


class Browser:
    """A headless Chromium with a throwaway profile, on a free port."""

    def __init__(self, program, deadline):
        self.deadline = deadline
        self.profile = tempfile.mkdtemp(prefix="assent-cdp-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        self.proc = None
        log = open(self.log_path, "wb")
        args = [program, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--mute-audio",
            "--window-size=1024,768", "--remote-debugging-port=0",
            "--user-data-dir=" + self.profile, "about:blank"]
        try:
            # Its own session: the whole process tree is killed at once.
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        except OSError as e:
            raise Failure("cannot run %s: %s" % (program, e), EX_UNAVAILABLE)
        finally:
            log.close()
            if self.proc is None:
                shutil.rmtree(self.profile, ignore_errors=True)
        try:
            self.port = self._wait_port()
            self.version = self._wait_version()
        except BaseException:
            self.close()
            raise

    def log_tail(self, n=5):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [l.rstrip() for l in f if "dbus" not in l]
            return " | ".join(l for l in lines[-n:] if l)
        except OSError:
            return ""

    def _gone(self):
        if self.proc.poll() is not None:
            raise Failure("Chromium exited with status %d: %s"
                % (self.proc.returncode, self.log_tail()), EX_UNAVAILABLE)

    def _wait_port(self):
        # --remote-debugging-port=0: Chromium picks a free port and
        # writes it to DevToolsActivePort in the profile.
        path = os.path.join(self.profile, "DevToolsActivePort")
        while time.monotonic() < self.deadline:
            self._gone()
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            except OSError:
                pass
            time.sleep(0.05)
        raise Failure("Chromium did not open its DevTools port: "
            + self.log_tail(), EX_UNAVAILABLE)

    def _wait_version(self):
        url = "http://127.0.0.1:%d/json/version" % self.port
        while time.monotonic() < self.deadline:
            self._gone()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return json.load(r)
            except (OSError, ValueError):
                time.sleep(0.05)
        raise Failure("no answer from " + url, EX_UNAVAILABLE)

    def close(self, asked=False):
        """Kill it (asked: it was asked to quit; give it a moment) and
        remove the profile."""
        if asked and self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(3)       # after Browser.close
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            # Helpers (zygote, renderers) left in its session.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


# ---- the protocol ------------------------------------------------------------


class CDP:
    """One websocket to the browser; pages are flattened sessions."""

    def __init__(self, ws_url, deadline):
        import websocket

        self.deadline = deadline
        self.next_id = 0
        self.events = []        # (sessionId, method, params) not yet taken
        # No Origin header: Chromium refuses websocket origins it was
        # not told to allow (--remote-allow-origins).
        self.ws = websocket.create_connection(ws_url, timeout=5,
            suppress_origin=True)
        self.websocket = websocket

    def _recv(self, what):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout(what)
        self.ws.settimeout(left)
        try:
            return json.loads(self.ws.recv())
        except self.websocket.WebSocketTimeoutException:
            raise Timeout(what)
        except self.websocket.WebSocketException as e:
            raise Failure("DevTools connection lost %s: %s" % (what, e))

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            m = self._recv("waiting for the answer to " + method)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise Failure("%s: %s" % (method,
                        m["error"].get("message", m["error"])))
                return m.get("result", {})
            if "method" in m:
                self.events.append((m.get("sessionId"), m["method"],
                    m.get("params", {})))

    def drop_events(self, session):
        self.events = [e for e in self.events if e[0] != session]

    def next(self, session, methods, pred, what):
        """The first event in session of one of methods for which
        pred(params) is true (pred None: any): (method, params)."""
        i = 0
        while True:
            while i < len(self.events):
                s, m, p = self.events[i]
                if s == session and m in methods and (pred is None or pred(p)):
                    del self.events[i]
                    return m, p
                i += 1
            m = self._recv(what)
            if "method" in m:
                self.events.append((m.get("sessionId"), m["method"],
                    m.get("params", {})))

    def wait(self, session, method, pred, what):
        return self.next(session, (method,), pred, what)[1]

    def quit(self):
        """Ask the browser to close (its helpers end with it), then
        hang up; Browser.close() kills whatever is left."""
        try:
            self.ws.settimeout(2)
            self.next_id += 1
            self.ws.send(json.dumps({"id": self.next_id,
                "method": "Browser.close"}))
            self.ws.recv()
        except Exception:
            pass
        try:
            self.ws.close()
        except Exception:
            pass


class Tab:
    """A page target and what its document requests answered."""

    def __init__(self, cdp):
        self.cdp = cdp
        tid = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = cdp.send("Target.attachToTarget",
            {"targetId": tid, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.send(domain + ".enable")
        self.frame = self.send("Page.getFrameTree")["frameTree"]["frame"]["id"]

    def send(self, method, params=None):
        return self.cdp.send(method, params, self.session)

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr,
            "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise Failure("script failed: %s" % d.get("exception", {}).get(
                "description", d.get("text")))
        return r["result"].get("value")

    def _document(self, what):
        """Wait for the main frame's next document and its load; what
        its request was and got."""
        s = self.session
        req = self.cdp.wait(s, "Network.requestWillBeSent",
            lambda p: p.get("type") == "Document" and
            p.get("frameId") == self.frame, what)
        rid = req["requestId"]
        first = req["request"]
        statuses, locations = [], []

        def ours(p):
            return p.get("requestId") == rid

        # Redirects come as further requests with the same id.
        while True:
            name, p = self.cdp.next(s, ("Network.requestWillBeSent",
                "Network.responseReceived", "Network.loadingFailed"),
                ours, what)
            if name == "Network.loadingFailed":
                if p.get("canceled"):
                    continue
                raise Failure("%s: %s" % (first["url"], p.get("errorText")))
            if name == "Network.requestWillBeSent":
                r = p.get("redirectResponse") or {}
                statuses.append(r.get("status"))
                locations.append(lower(r.get("headers", {})).get("location"))
                continue
            resp = p["response"]
            statuses.append(resp.get("status"))
            break
        self.cdp.wait(s, "Page.loadEventFired", None, what)
        return {"method": first.get("method"), "request_url": first["url"],
            "status": statuses[-1], "statuses": statuses,
            "redirect_locations": [l for l in locations if l],
            "headers": lower(resp.get("headers", {}))}

    def page(self):
        return self.eval("({url: location.href, text: document.body ? "
            "document.body.innerText : '', buttons: Array.from("
            "document.querySelectorAll('button, input[type=submit]'))"
            ".map(b => (b.innerText || b.value || '').replace(/\\s+/g, ' ')"
            ".trim())})")

    def navigate(self, url):
        self.cdp.drop_events(self.session)
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise Failure("%s: %s" % (url, r["errorText"]))
        doc = self._document("loading " + url)
        doc.update(self.page())
        return doc

    def type_into(self, name, value):
        """Focus the field called name and type value."""
        found = self.eval("""(() => {
          const f = document.getElementsByName(%s);
          if (f.length !== 1) return f.length;
          f[0].scrollIntoView({block: 'center'});
          f[0].focus();
          return 1;
        })()""" % json.dumps(name))
        if found != 1:
            raise Failure("%d fields named %s on %s" % (found,
                json.dumps(name), self.eval("location.href")))
        self.send("Input.insertText", {"text": value})

    def click(self, text):
        """Click the button labelled text with the mouse; the page the
        click leads to."""
        # The button's centre, in view.
        js = """(() => {
          const want = %s;
          const all = Array.from(document.querySelectorAll(
              'button, input[type=submit]'));
          const label = b => (b.innerText || b.value || '')
              .replace(/\\s+/g, ' ').trim();
          const hits = all.filter(b => label(b) === want);
          if (hits.length !== 1)
            return {found: hits.length, labels: all.map(label)};
          hits[0].scrollIntoView({block: 'center'});
          const r = hits[0].getBoundingClientRect();
          return {found: 1, x: r.left + r.width / 2, y: r.top + r.height / 2,
              disabled: hits[0].disabled};
        })()""" % json.dumps(text)
        b = self.eval(js)
        if b["found"] != 1:
            raise Failure("%d buttons labelled %s on %s (buttons: %s)" % (
                b["found"], json.dumps(text), self.eval("location.href"),
                json.dumps(b.get("labels"))))
        if b["disabled"]:
            raise Failure("the button %s is disabled" % json.dumps(text))
        self.send("Page.bringToFront")
        self.cdp.drop_events(self.session)
        for kind, buttons in (("mouseMoved", 0), ("mousePressed", 1),
            ("mouseReleased", 0)):
            self.send("Input.dispatchMouseEvent", {"type": kind,
                "x": b["x"], "y": b["y"], "button": "left",
                "buttons": buttons, "clickCount": 1})
        doc = self._document("waiting for the page after clicking "
            + json.dumps(text))
        doc.update(self.page())
        return doc


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


# ---- commands ------------------------------------------------------------------


def expect(doc, text):
    if text is not None and text not in doc["text"]:
        raise Failure("the page at %s does not say %s; it says: %s" % (
            doc["url"], json.dumps(text), json.dumps(doc["text"])))


def cmd_show(cdp, browser, a, out):
    tab = Tab(cdp)
    doc = tab.navigate(a.url)
    doc["user_agent"] = tab.eval("navigator.userAgent")
    doc["browser"] = browser.version.get("Browser")
    out.update(doc)
    expect(doc, a.expect_text)


def cmd_click(cdp, browser, a, out):
    tabs = [Tab(cdp) for _ in range(a.tabs)]
    befores = [t.navigate(a.url) for t in tabs]
    pages = []
    out["user_agent"] = tabs[0].eval("navigator.userAgent")
    out["browser"] = browser.version.get("Browser")
    out["pages"] = pages
    for i, (tab, before) in enumerate(zip(tabs, befores)):
        doc = tab.click(a.button_text)
        doc["before_text"] = before["text"]
        doc["before_status"] = before["status"]
        pages.append(doc)
        for k in ("url", "method", "status", "text"):
            out[k] = doc[k]
        expect(doc, a.expect_text)
        if a.between and i + 1 < len(tabs):
            left = max(1, browser.deadline - time.monotonic())
            try:
                r = subprocess.run(["sh", "-c", a.between], timeout=left)
            except subprocess.TimeoutExpired:
                raise Timeout("running --between")
            if r.returncode != 0:
                raise Failure("--between exited %d" % r.returncode)


def cmd_fill(cdp, browser, a, out):
    tab = Tab(cdp)
    before = tab.navigate(a.url)
    out["user_agent"] = tab.eval("navigator.userAgent")
    out["browser"] = browser.version.get("Browser")
    out["before_text"] = before["text"]
    out["before_status"] = before["status"]
    for field in a.field:
        name, _, value = field.partition("=")
        tab.type_into(name, value)
    doc = tab.click(a.button_text)
    out.update(doc)
    expect(doc, a.expect_text)


def cmd_check(a):
    need_websocket()
    prog = find_chromium(a.chromium)
    print(prog)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print("cdp.py: " + message, file=sys.stderr)
        sys.exit(EX_USAGE)


def parse(argv):
    p = Parser(prog="cdp.py", description="Drive headless Chromium.")
    p.add_argument("--timeout", type=float, default=25.0)
    p.add_argument("--chromium")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("check")
    s = sub.add_parser("show")
    s.add_argument("url")
    s.add_argument("--expect-text")
    c = sub.add_parser("click")
    c.add_argument("url")
    c.add_argument("--button-text", required=True)
    c.add_argument("--expect-text")
    c.add_argument("--tabs", type=int, default=1)
    c.add_argument("--between")
    f = sub.add_parser("fill")
    f.add_argument("url")
    f.add_argument("--field", action="append", default=[])
    f.add_argument("--button-text", required=True)
    f.add_argument("--expect-text")
    a = p.parse_args(argv)
    if a.cmd == "fill" and any("=" not in x for x in a.field):
        p.error("--field takes NAME=VALUE")
    if a.cmd == "click" and not 1 <= a.tabs <= 8:
        p.error("--tabs must be 1 to 8")
    return a


def on_alarm(signum, frame):
    raise Timeout("(overall --timeout)")


def run(a):
    if a.cmd == "check":
        cmd_check(a)
        return
    need_websocket()
    prog = find_chromium(a.chromium)
    deadline = time.monotonic() + a.timeout
    # A backstop for a step stuck outside the deadline checks.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(a.timeout) + 2)
    browser = cdp = None
    out = {}
    try:
        browser = Browser(prog, deadline)
        cdp = CDP(browser.version["webSocketDebuggerUrl"], deadline)
        if a.cmd == "show":
            cmd_show(cdp, browser, a, out)
        elif a.cmd == "fill":
            cmd_fill(cdp, browser, a, out)
        else:
            cmd_click(cdp, browser, a, out)
    finally:
        signal.alarm(0)
        if out:
            json.dump(out, sys.stdout, indent=1, sort_keys=True)
            print()
        if cdp is not None:
            cdp.quit()
        if browser is not None:
            browser.close(asked=cdp is not None)


def main():
    a = parse(sys.argv[1:])
    try:
        run(a)
    except Failure as e:
        print("cdp.py: %s" % e, file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print("cdp.py: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
