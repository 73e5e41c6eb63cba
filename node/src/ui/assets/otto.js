// Otto UI: live updates for server-rendered pages. No framework, no build step.
//
// Pages whose <main> has data-live subscribe to /ui/events. On a change (for the page's
// run, when it shows one) the page fetches its own URL again and swaps <main>, keeping
// the scroll position and the focused element. When the event stream breaks (the node
// restarted, or the session ended) the page refetches; a 401 shows a banner instead.
(function () {
  "use strict";

  var main = document.getElementById("main");
  var banner = document.getElementById("banner");
  if (!main || !banner || !main.hasAttribute("data-live")) {
    return;
  }
  var run = main.getAttribute("data-run");
  var inFlight = false;
  var again = false;
  var signedOut = false;
  var lastFetch = 0;
  var MIN_GAP = 250;

  function show(text, kind) {
    banner.textContent = text;
    banner.className = "banner " + (kind || "");
    banner.hidden = false;
  }

  function hide() {
    banner.hidden = true;
    banner.textContent = "";
  }

  // A key that finds "the same" element in the new <main>.
  function keyOf(el) {
    if (!el || el === document.body || !main.contains(el)) {
      return null;
    }
    if (el.id) {
      return "#" + CSS.escape(el.id);
    }
    var parts = [];
    var node = el;
    while (node && node !== main) {
      var sel = node.tagName.toLowerCase();
      var testid = node.getAttribute("data-testid");
      var stage = node.getAttribute("data-stage");
      var name = node.getAttribute("name");
      if (testid) {
        sel += '[data-testid="' + CSS.escape(testid) + '"]';
      }
      if (stage) {
        sel += '[data-stage="' + CSS.escape(stage) + '"]';
      }
      if (name) {
        sel += '[name="' + CSS.escape(name) + '"]';
      }
      if (!testid && !stage && !name && node.parentElement) {
        var index = Array.prototype.indexOf.call(node.parentElement.children, node) + 1;
        sel += ":nth-child(" + index + ")";
      }
      parts.unshift(sel);
      node = node.parentElement;
    }
    return parts.join(" > ");
  }

  function refresh() {
    if (signedOut) {
      return;
    }
    if (inFlight) {
      again = true;
      return;
    }
    var wait = lastFetch + MIN_GAP - Date.now();
    if (wait > 0) {
      inFlight = true;
      setTimeout(function () {
        inFlight = false;
        refresh();
      }, wait);
      return;
    }
    inFlight = true;
    lastFetch = Date.now();
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 401) {
          signOut();
          return null;
        }
        if (!response.ok) {
          show("The node answered " + response.status + "; showing the last known state.", "warn");
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) {
          return;
        }
        var focusKey = keyOf(document.activeElement);
        var log = main.querySelector('[data-testid="log"]');
        var atBottom = log && log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        var logTop = log ? log.scrollTop : 0;
        var x = window.scrollX;
        var y = window.scrollY;
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
          return document.importNode(n, true);
        }));
        var meta = doc.querySelector('meta[name="otto-csrf"]');
        var mine = document.querySelector('meta[name="otto-csrf"]');
        if (meta && mine) {
          mine.setAttribute("content", meta.getAttribute("content"));
        }
        var newLog = main.querySelector('[data-testid="log"]');
        if (newLog) {
          newLog.scrollTop = atBottom ? newLog.scrollHeight : logTop;
        }
        window.scrollTo(x, y);
        if (focusKey) {
          var target = main.querySelector(focusKey);
          if (target && typeof target.focus === "function") {
            target.focus({ preventScroll: true });
          }
        }
        hide();
      })
      .catch(function () {
        show("The node cannot be reached; retrying…", "warn");
      })
      .then(function () {
        inFlight = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function signOut() {
    signedOut = true;
    if (source) {
      source.close();
    }
    show("Signed out — run `otto ui` for a new sign-in link.", "error");
  }

  var source = null;
  var broken = false;

  function connect() {
    // The run's tag when the page was drawn: the node answers with a change at once if the
    // run has moved on since (say, between drawing the page and this connection).
    var etag = main.getAttribute("data-etag");
    var url = "/ui/events" + (run ? "?run=" + encodeURIComponent(run) : "") +
      (run && etag ? "&etag=" + encodeURIComponent(etag) : "");
    source = new EventSource(url);
    source.addEventListener("open", function () {
      if (broken) {
        broken = false;
        refresh();
      }
    });
    source.addEventListener("change", function (e) {
      try {
        var data = JSON.parse(e.data);
        if (run && data.run && data.run !== run) {
          return;
        }
      } catch (ignored) {
        // A change is a change.
      }
      refresh();
    });
    source.addEventListener("error", function () {
      broken = true;
      // The browser retries by itself; find out whether the session survived.
      fetch(window.location.href, { method: "HEAD", credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401) {
            signOut();
          }
        })
        .catch(function () {
          show("The node cannot be reached; retrying…", "warn");
        });
    });
  }

  connect();
})();
