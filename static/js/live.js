/* Live updates for the inbox page: the websocket is a hint, the server's pages are the truth.
 *
 * The page opens its socket with the htmx ws extension (hx-ext="ws,live-frame"
 * ws-connect="/ws/inbox/…"), which applies the out-of-band fragments the server sends. This file
 * adds what the extension leaves to us, the socket's lifecycle:
 *   - the browser's time zone in the `tz` cookie, so the server renders times in it;
 *   - after a reconnect, reload the visible fragments (frames sent while we were away are lost);
 *   - reconnect after a clean close too (the extension only retries abnormal closes);
 *   - while the socket is down (cannot connect, or keeps closing), poll the fragments;
 *   - leave out the parts of a frame whose target this page does not show (`live-frame`);
 *   - finish what the server leaves to the browser in fragments it renders once for every agent:
 *     "You" on this agent's own bubbles, the unread badge a row had when an update says to keep
 *     it, and a fetch of a fragment when the frame says it was too large to carry
 *     (inbox.js formats their times in this browser's zone).
 * The thread's scroll and its one bubble per message are thread.js's, resynced ones included.
 * `document.body.dataset.live` says where we are: connecting, open, closed or polling.
 */
(function () {
  "use strict";

  var POLL_EVERY_MS = 4000;
  var POLL_AFTER_MS = 3000; // down this long (or never up): start polling
  var GIVE_UP_CODES = [4403, 4404]; // not signed in / not visible: retrying will not help
  var EXTENSION_RETRIES = [1006, 1011, 1012, 1013]; // the ws extension reconnects these itself

  setTimeZoneCookie();

  var state = { everOpened: false, open: false, closedSinceOpen: false, pollTimer: null, downTimer: null, retries: 0 };

  function setTimeZoneCookie() {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      // Zone names are cookie-safe as they are; the server reads the cookie verbatim.
      if (zone && /^[A-Za-z0-9_+\-\/]+$/.test(zone) && document.cookie.split("; ").indexOf("tz=" + zone) === -1) {
        document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
      }
    } catch (e) {
      /* no Intl: the server's zone is used */
    }
  }

  function setLive(value) {
    if (document.body) document.body.dataset.live = value;
  }

  function socketElement() {
    return document.querySelector("[ws-connect]");
  }

  // ---- resync: fetch the visible fragments again -------------------------------------------

  var FRAGMENTS = ["conversation-list", "messages", "window-banner"];

  function fragmentUrl(element) {
    return element.getAttribute("data-refresh-url") || element.getAttribute("hx-get") || window.location.href;
  }

  function fetchFragment(element) {
    var url = fragmentUrl(element);
    var headers = { "X-Requested-With": "XMLHttpRequest" };
    if (url !== window.location.href) {
      // Through its normal hx-get URL, as htmx itself would ask for it.
      headers["HX-Request"] = "true";
      headers["HX-Target"] = element.id;
      headers["HX-Current-URL"] = window.location.href;
    }
    return fetch(url, { headers: headers, credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("resync of #" + element.id + " answered " + response.status);
      return response.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById(element.id);
      if (!fresh) {
        // A fragment endpoint may answer with the container's content only.
        fresh = document.createElement(element.tagName);
        fresh.id = element.id;
        fresh.innerHTML = doc.body.innerHTML;
      }
      return fresh;
    });
  }

  function replaceChildren(current, fresh) {
    current.innerHTML = fresh.innerHTML;
    htmx.process(current);
  }

  function replaceElement(current, fresh) {
    var node = document.importNode(fresh, true);
    current.replaceWith(node);
    htmx.process(node);
  }

  function resync(only) {
    var ids = Array.isArray(only) ? FRAGMENTS.filter(function (id) { return only.indexOf(id) >= 0; }) : FRAGMENTS;
    var jobs = ids.map(function (id) {
      var element = document.getElementById(id);
      if (!element) return Promise.resolve();
      return fetchFragment(element).then(function (fresh) {
        if (id === "messages") window.parleyThread.merge(fresh);
        else if (id === "conversation-list") replaceChildren(element, fresh);
        else replaceElement(element, fresh);
      }).catch(function (error) {
        if (window.console) console.warn(error);
      });
    });
    return Promise.all(jobs).then(function () {
      document.body.dispatchEvent(new CustomEvent("live:resynced", { bubbles: true }));
    });
  }

  // ---- polling while the socket is down -----------------------------------------------------

  function startPolling() {
    if (state.pollTimer || state.open) return;
    setLive("polling");
    resync();
    state.pollTimer = window.setInterval(resync, POLL_EVERY_MS);
  }

  function stopPolling() {
    if (state.pollTimer) window.clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function pollIfStillDown() {
    if (state.downTimer) return;
    state.downTimer = window.setTimeout(function () {
      state.downTimer = null;
      if (!state.open) startPolling();
    }, POLL_AFTER_MS);
  }

  // ---- the extension's events ----------------------------------------------------------------

  document.addEventListener("htmx:wsConnecting", function () {
    if (!state.open && !state.pollTimer) setLive("connecting");
  });

  // The page points its socket elsewhere by swapping the `[ws-connect]` element: the old
  // socket's events no longer speak for the page.
  function current(event) {
    return event.target && document.body.contains(event.target);
  }

  document.addEventListener("htmx:wsOpen", function (event) {
    if (!current(event)) return;
    var wasAway = state.closedSinceOpen || state.pollTimer !== null;
    state.open = true;
    state.everOpened = true;
    state.closedSinceOpen = false;
    state.retries = 0;
    stopPolling();
    if (state.downTimer) window.clearTimeout(state.downTimer);
    state.downTimer = null;
    setLive("open");
    if (wasAway) resync();
  });

  document.addEventListener("htmx:wsClose", function (event) {
    if (!current(event)) return;
    var code = event.detail && event.detail.event ? event.detail.event.code : 1006;
    state.open = false;
    state.closedSinceOpen = true;
    setLive(state.pollTimer ? "polling" : "closed");
    if (GIVE_UP_CODES.indexOf(code) >= 0) {
      startPolling();
      return;
    }
    if (EXTENSION_RETRIES.indexOf(code) < 0) {
      // A clean close (server restart, proxy idle timeout): the extension will not retry.
      var wrapper = event.detail.socketWrapper;
      var source = event.target;
      var delay = Math.min(30000, 500 * Math.pow(2, state.retries)) * (0.5 + Math.random() / 2);
      state.retries += 1;
      window.setTimeout(function () {
        if (!state.open && document.body.contains(source) && wrapper && wrapper.reconnect) wrapper.reconnect();
      }, delay);
    }
    pollIfStillDown();
  });

  document.addEventListener("htmx:wsError", function (event) {
    if (current(event) && !state.open) pollIfStillDown();
  });

  // ---- frames: a part without a target on this page is nothing to do ------------------------

  // Frames are rendered once for every page of the organization: the row of a conversation this
  // list does not hold (a new one, one beyond the loaded page), the sender's copy of a bubble that
  // is not here to be replaced, rows sent to the "New message" page, which has no list. htmx would
  // report each of them as htmx:oobErrorNoTarget; leave them out before it swaps the rest.
  htmx.defineExtension("live-frame", {
    transformResponse: function (text) {
      var frame = document.createElement("template");
      frame.innerHTML = text; // a template's content is inert: it runs and loads nothing
      var missing = Array.prototype.filter.call(frame.content.children, function (part) {
        return !hasTarget(part);
      });
      if (!missing.length) return text;
      missing.forEach(function (part) { part.remove(); });
      return frame.innerHTML;
    }
  });

  function hasTarget(part) {
    // htmx's reading of hx-swap-oob: "<swap>:<selector>", or a swap of the element with its id.
    var swap = part.getAttribute("hx-swap-oob") || "true";
    var colon = swap.indexOf(":");
    var selector = colon > 0 ? swap.slice(colon + 1) : part.id ? "#" + CSS.escape(part.id) : "";
    if (!selector) return true; // not a part the server makes: let htmx say what is wrong
    try {
      return document.querySelector(selector) !== null;
    } catch (e) {
      return true;
    }
  }

  // ---- viewer-independent frames ------------------------------------------------------------

  // Rows that an update replaces say `data-keep-state`: they keep the unread badge they had.
  var unreadBefore = {};
  document.addEventListener("htmx:wsBeforeMessage", function () {
    unreadBefore = {};
    document.querySelectorAll("#conversation-list .row.unread[id]").forEach(function (row) {
      unreadBefore[row.id] = row.querySelector(".badge") ? row.querySelector(".badge").cloneNode(true) : true;
    });
  });

  function finishFrame() {
    document.querySelectorAll("#conversation-list [data-keep-state]").forEach(function (row) {
      row.removeAttribute("data-keep-state");
      var badge = unreadBefore[row.id];
      if (!badge || row.classList.contains("active")) return;
      row.classList.add("unread");
      var bottom = row.querySelector(".row-bottom");
      if (badge !== true && bottom && !bottom.querySelector(".badge")) bottom.appendChild(badge);
    });
    var viewer = document.body.getAttribute("data-viewer-id");
    if (viewer) {
      document.querySelectorAll("#messages .bubble-sender[data-sender-id='" + viewer + "']").forEach(function (label) {
        label.textContent = "You";
      });
    }
    var hints = document.querySelectorAll("#live [data-resync]");
    if (hints.length) {
      var wanted = {};
      hints.forEach(function (hint) { wanted[hint.getAttribute("data-resync")] = true; hint.remove(); });
      resync(Object.keys(wanted));
    }
  }
  document.addEventListener("htmx:wsAfterMessage", finishFrame);

  // A page whose socket never opens (blocked by a proxy, server without websockets) polls.
  document.addEventListener("DOMContentLoaded", function () {
    if (!socketElement()) return;
    if (!state.open && !state.pollTimer) setLive("connecting");
    window.setTimeout(function () {
      if (!state.everOpened) startPolling();
    }, POLL_AFTER_MS);
  });

  window.parleyLive = { resync: resync, state: state };
})();
