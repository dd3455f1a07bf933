/* The open conversation's thread (#messages): its scroll, and one bubble per message.
 *
 * The only module that listens to htmx's swap events for the thread. Whatever brings bubbles in
 * (the socket's frames, the agent's own send, a resync by live.js, a page of older messages):
 *   - a conversation opens at its newest message;
 *   - new bubbles keep the thread at the bottom when the agent was there (within AT_BOTTOM_PX),
 *     and always after the agent's own send;
 *   - older messages loading above keep the agent's place;
 *   - one bubble per message (`message-<id>`): a send's response and the socket's frame can both
 *     bring the same one. The frame deletes the copy it replaces; a response landing after the
 *     frame leaves the one already shown (the socket renders after commit, so it is never older).
 */
(function () {
  "use strict";

  var AT_BOTTOM_PX = 120;

  function thread() {
    return document.getElementById("messages");
  }

  function atBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < AT_BOTTOM_PX;
  }

  function toBottom(box) {
    box.scrollTop = box.scrollHeight;
  }

  function inThread(element) {
    var box = thread();
    return Boolean(box && element && (element === box || box.contains(element)));
  }

  function dedupe(box) {
    var seen = {};
    Array.prototype.slice.call(box.querySelectorAll("[id^='message-']")).forEach(function (element) {
      if (!/^message-\d+$/.test(element.id)) return;
      if (seen[element.id]) element.remove();
      else seen[element.id] = true;
    });
  }

  // ---- responses to the page's own requests ---------------------------------------------------

  var older = null; // where the agent was reading when a page of older messages was asked for

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "older-messages") {
      var box = thread();
      older = box ? { box: box, height: box.scrollHeight, top: box.scrollTop } : null;
    }
  });

  // Right after the swap, in the same task, so no duplicate bubble is ever painted.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var box = thread();
    if (!box || !target) return;
    dedupe(box);
    if (target.id === "workspace" || target.id === "thread-pane") {
      // A conversation (or a contact's thread) opened: its newest message, and the composer.
      toBottom(box);
      var text = document.querySelector("[data-composer-text]");
      if (text && window.matchMedia("(min-width: 900px)").matches) text.focus();
    } else if (target.id === "messages") {
      toBottom(box); // the agent's own send
    }
  });

  // Older messages: after settling, put back what the agent was reading.
  document.addEventListener("htmx:afterSettle", function () {
    if (!older) return;
    var anchor = older;
    older = null;
    anchor.box.scrollTop = anchor.top + (anchor.box.scrollHeight - anchor.height);
  });

  // ---- out-of-band parts (the socket's frames) ------------------------------------------------

  // Decided before each part that touches the thread (a bubble appended, its old copy deleted, a
  // delivery status replaced), applied after it: the part's target may be gone by then.
  var follow = null;

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (inThread(event.detail.target)) follow = atBottom(thread());
  });

  document.addEventListener("htmx:oobAfterSwap", function () {
    if (follow === null) return;
    var stay = follow;
    follow = null;
    var box = thread();
    if (!box) return;
    dedupe(box);
    if (stay) toBottom(box);
  });

  // ---- resync (live.js fetched #messages again) -----------------------------------------------

  // Keep older messages the agent scrolled up to; update the ones we have; add the missing.
  function merge(fresh) {
    var box = thread();
    if (!box) return;
    var stay = atBottom(box);
    Array.prototype.forEach.call(fresh.children, function (child) {
      var existing = child.id ? document.getElementById(child.id) : null;
      var node = document.importNode(child, true);
      if (existing && box.contains(existing)) {
        existing.replaceWith(node);
      } else if (child.id && child.id.indexOf("message-") === 0) {
        box.appendChild(node);
      } else {
        return;
      }
      htmx.process(node);
    });
    dedupe(box);
    if (stay) toBottom(box);
  }

  window.parleyThread = { merge: merge };

  function init() {
    var box = thread();
    if (box) toBottom(box);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
