/* Parley inbox page behaviour: time zone cookie, composer keys, attachment chips, relative
 * times and toasts. The thread's scroll lives in thread.js; live updates (socket, reconnect,
 * polling) in live.js. */
(function () {
  "use strict";

  // The agent's time zone, for server-rendered times (AgentTimezoneMiddleware reads it).
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + encodeURIComponent(zone)) === -1) {
      document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* older browsers: times stay in UTC */ }

  function csrfToken() {
    var headers = document.body && document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["x-csrftoken"]; } catch (e) { return ""; }
  }

  // Toasts ---------------------------------------------------------------------------------
  function toast(message, level) {
    var box = document.getElementById("toasts");
    if (!box || !message) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (level || "info");
    item.textContent = message; // never HTML: messages may quote what someone typed
    box.appendChild(item);
    setTimeout(function () { item.classList.add("is-leaving"); }, 5000);
    setTimeout(function () { item.remove(); }, 5600);
  }
  window.parleyToast = toast;
  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    toast(detail.message || detail.value, detail.level);
  });
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 404) toast("That is no longer available.", "error");
    else if (status === 403) toast("Your session has expired. Reload the page to sign in again.", "error");
    else toast("Something went wrong. Please try again.", "error");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach Parley. Check your connection.", "error");
  });

  // Relative times ----------------------------------------------------------------------------
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  function relative(date, now) {
    var seconds = (now - date) / 1000;
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.max(1, Math.round(seconds / 60)) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    var yesterday = new Date(now); yesterday.setDate(now.getDate() - 1);
    if (date.toDateString() === yesterday.toDateString()) return "yesterday";
    if (seconds < 7 * 86400) return DAYS[date.getDay()];
    var label = date.getDate() + " " + MONTHS[date.getMonth()];
    return date.getFullYear() === now.getFullYear() ? label : label + " " + date.getFullYear();
  }
  // Live fragments are rendered once for everyone, in UTC (`data-browser-time`): show them in
  // this browser's zone, as the server shows page times in the zone of the tz cookie.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zoneName(date) {
    try {
      var parts = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(date);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName" && !/^(GMT|UTC)[+-]/.test(parts[i].value)) return parts[i].value;
      }
    } catch (e) { /* no Intl: the offset below */ }
    var offset = -date.getTimezoneOffset();
    if (offset === 0) return "UTC";
    var abs = Math.abs(offset);
    return (offset > 0 ? "+" : "-") + pad(Math.floor(abs / 60)) + (abs % 60 ? pad(abs % 60) : "");
  }
  function formatBrowserTimes(root) {
    (root || document).querySelectorAll("time[data-browser-time]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      var clock = pad(date.getHours()) + ":" + pad(date.getMinutes());
      var seconds = el.hasAttribute("data-clock") ? ":" + pad(date.getSeconds()) : "";
      el.title = DAYS[date.getDay()] + " " + date.getDate() + " " + MONTHS[date.getMonth()] + " " +
        date.getFullYear() + ", " + clock + seconds + " (" + zoneName(date) + ")";
      if (el.hasAttribute("data-clock")) el.textContent = clock;
      el.removeAttribute("data-browser-time");
    });
  }
  function refreshTimes(root) {
    formatBrowserTimes(root);
    var now = new Date();
    (root || document).querySelectorAll("time[data-relative]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) el.textContent = relative(date, now);
    });
  }
  setInterval(refreshTimes, 60000);

  // Window banner countdown
  function refreshWindow() {
    var banner = document.getElementById("window-banner");
    if (!banner || !banner.dataset.closesAt || !banner.classList.contains("is-open")) return;
    var left = Math.floor((new Date(banner.dataset.closesAt) - new Date()) / 60000);
    if (left <= 0) { banner.classList.remove("is-open"); banner.classList.add("is-closed"); return; }
    var h = Math.floor(left / 60), m = left % 60;
    var dot = banner.querySelector(".dot");
    banner.textContent = " Window open: " + (h ? h + " h " + m + " min" : m + " min") + " left";
    if (dot) banner.prepend(dot);
  }
  setInterval(refreshWindow, 60000);

  // New content from any swap (a response, an out-of-band part, a socket frame): its times.
  document.addEventListener("htmx:load", function () { refreshTimes(); });

  // Active row / contact: mark what was clicked (the list itself is not re-rendered).
  document.addEventListener("click", function (event) {
    var row = event.target.closest("#conversation-list .row, #contact-results .picker-item");
    if (!row || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    row.parentElement.closest("#conversation-list, #contact-results")
      .querySelectorAll(".active").forEach(function (el) { el.classList.remove("active"); el.removeAttribute("aria-current"); });
    row.classList.add("active");
    row.classList.remove("unread");
    var badge = row.querySelector(".badge");
    if (badge) badge.remove();
    var layout = document.querySelector(".inbox, .split");
    if (layout) layout.classList.add("has-open");
  });
  document.addEventListener("click", function (event) {
    var back = event.target.closest(".conversation-header .back");
    if (!back || window.matchMedia("(min-width: 900px)").matches) return;
    // On phones the list is underneath: show it without a round trip when it is there.
    var layout = document.querySelector(".inbox, .split");
    var list = document.querySelector(".list-pane");
    if (layout && list && list.querySelector("a")) {
      event.preventDefault();
      layout.classList.remove("has-open");
      history.pushState({}, "", back.getAttribute("href"));
    }
  });

  // Composer: Enter sends, Shift+Enter adds a line; the textarea grows with its text ------------
  function grow(text) {
    text.style.height = "auto";
    text.style.height = Math.min(text.scrollHeight, 200) + "px";
  }
  document.addEventListener("keydown", function (event) {
    var text = event.target.closest && event.target.closest("[data-composer-text]");
    if (!text || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    var form = text.form;
    var button = form && form.querySelector("button[type=submit]");
    if (form && !(button && button.disabled)) form.requestSubmit();
  });
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("[data-composer-text]")) {
      grow(event.target);
      typing();
    }
  });
  // Typing indicator for the customer's app: at most one POST every 5 s (the server throttles too).
  var lastTyping = 0;
  function typing() {
    var box = document.getElementById("messages");
    var url = box && box.dataset.typingUrl;
    if (!url || Date.now() - lastTyping < 5000) return;
    lastTyping = Date.now();
    fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } })
      .catch(function () { /* best effort */ });
  }
  // Attachments: checked here against the channel's rules, then again by the server ------------
  function humanSize(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }
  function chipError(chips, name, message) {
    var chip = document.createElement("span");
    chip.className = "chip chip-error";
    chip.setAttribute("data-chip-error", "");
    chip.setAttribute("role", "alert");
    var n = document.createElement("span"); n.className = "chip-name"; n.textContent = name;
    var r = document.createElement("span"); r.className = "chip-reason"; r.textContent = message;
    var x = document.createElement("button"); x.type = "button"; x.className = "chip-remove";
    x.setAttribute("data-chip-remove", ""); x.setAttribute("aria-label", "Dismiss"); x.textContent = "×";
    chip.append(n, r, x);
    chips.appendChild(chip);
  }
  function upload(input, file) {
    var form = input.form;
    var chips = form.querySelector("[data-chips]");
    var limits = {};
    try { limits = JSON.parse(input.dataset.limits || "{}"); } catch (e) { limits = {}; }
    var max = parseInt(input.dataset.maxFiles || "10", 10);
    if (chips.querySelectorAll("[data-chip]").length >= max) {
      chipError(chips, file.name, "At most " + max + " attachments per message.");
      return;
    }
    var type = file.type || "application/octet-stream";
    if (!(type in limits)) {
      chipError(chips, file.name, "This type of file (" + type + ") cannot be sent on this channel.");
      return;
    }
    if (file.size > limits[type]) {
      chipError(chips, file.name, "Too large: " + humanSize(file.size) + " (limit " + humanSize(limits[type]) + ").");
      return;
    }
    var pending = document.createElement("span");
    pending.className = "chip chip-uploading";
    pending.textContent = "Uploading " + file.name + "…";
    chips.appendChild(pending);
    var data = new FormData();
    data.append("file", file);
    data.append("channel", input.dataset.channel);
    fetch(input.dataset.uploadUrl, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" }
    }).then(function (response) {
      return response.text().then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html; // our own escaped fragment (_chip.html / _chip_error.html)
        var chip = template.content.firstElementChild;
        if (chip) pending.replaceWith(chip); else pending.remove();
        if (!response.ok) {
          var reason = chip && chip.querySelector(".chip-reason");
          toast(reason ? reason.textContent : "Upload failed.", "error");
        }
      });
    }).catch(function () {
      pending.remove();
      chipError(chips, file.name, "Upload failed: could not reach Parley.");
    });
  }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=file][data-upload-url]")) return;
    Array.prototype.forEach.call(input.files, function (file) { upload(input, file); });
    input.value = "";
  });
  document.addEventListener("click", function (event) {
    var remove = event.target.closest("[data-chip-remove]");
    if (remove) remove.closest(".chip").remove();
  });

  // Organization switcher submits on change.
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });

  function init() {
    refreshTimes();
    refreshWindow();
    document.querySelectorAll("[data-composer-text]").forEach(grow);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
