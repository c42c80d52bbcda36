// The "what changed" page: new changes from the page's event stream (/web/changes/stream,
// Server-Sent Events) are prepended to the list. EventSource reconnects by itself and sends the
// last id it saw (Last-Event-ID), so the server resumes exactly after it.
(function () {
  "use strict";
  var MAX_ROWS = 200;

  function text(tag, className, value) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    if (value !== undefined) el.textContent = value;
    return el;
  }

  function place(venue) {
    if (!venue) return "";
    return [venue.name, venue.city, venue.state, venue.country].filter(Boolean).join(", ");
  }

  function changed(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso || "");
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function row(change) {
    var event = change.event || {};
    var li = text("li", "result change new");
    li.dataset.canonicalId = change.canonical_id;
    var head = text("p");
    head.appendChild(text("span", "op op-" + change.op, change.op));
    head.appendChild(document.createTextNode(" "));
    var link = text("a", "", event.title || change.canonical_id);
    link.href = "/web/events/" + encodeURIComponent(change.canonical_id);
    head.appendChild(link);
    li.appendChild(head);
    var where = place(event.venue);
    if (event.category) {
      where += (where ? " · " : "") + event.category + (event.subcategory ? " › " + event.subcategory : "");
    }
    li.appendChild(text("p", "where", where));
    var when = text("p", "when", "Changed ");
    var time = text("time", "", changed(change.modified));
    time.setAttribute("datetime", change.modified || "");
    when.appendChild(time);
    when.appendChild(document.createTextNode(" · version " + change.version));
    li.appendChild(when);
    return li;
  }

  function start() {
    var list = document.getElementById("changes");
    var status = document.getElementById("live-status");
    if (!list || !list.dataset.stream || !window.EventSource) return;
    var source = new EventSource(list.dataset.stream);
    status.textContent = "Connecting to live updates…";
    source.onopen = function () {
      status.textContent = "Live: new changes appear at the top.";
    };
    source.onerror = function () {
      status.textContent = source.readyState === EventSource.CLOSED
        ? "Live updates stopped; reload the page."
        : "Reconnecting to live updates…";
    };
    source.addEventListener("change", function (message) {
      var change;
      try {
        change = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      var empty = document.getElementById("no-changes");
      if (empty) empty.remove();
      // One row per event: a newer change of it replaces the older row.
      var old = list.querySelector('[data-canonical-id="' + CSS.escape(change.canonical_id) + '"]');
      if (old) old.remove();
      list.insertBefore(row(change), list.firstChild);
      while (list.children.length > MAX_ROWS) list.removeChild(list.lastChild);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
