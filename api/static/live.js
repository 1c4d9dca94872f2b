// Live timelines and avatar fallbacks; the pages work without this script, only less well.
//
// A timeline page's newest page carries `data-live="<cursor>"` on its message list. This
// opens a server-sent event stream on the page's own URL (the server tells page and stream
// apart by the Accept header EventSource sends), asking for what came after that cursor, and
// puts each new message on top of the list — or takes a flagged one away. EventSource
// reconnects by itself, and resumes after the last event it received.
(function () {
  "use strict";

  // Gravatar may be unreachable (no outside access, a blocker): an avatar that fails to load
  // is replaced by the server's own identicon of the same hash, so no image shows broken.
  // One listener on the document (`error` does not bubble, but is captured) serves every
  // image, those that scripts put in later too: a live message, an inbox the chat refreshed.
  function useFallback(img) {
    var fallback = img.getAttribute("data-fallback");
    if (!fallback) return;
    img.removeAttribute("data-fallback");
    img.src = fallback;
  }
  document.addEventListener("error", function (event) {
    if (event.target instanceof HTMLImageElement) useFallback(event.target);
  }, true);
  // Those that failed before this script ran.
  document.querySelectorAll("img[data-fallback]").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0) useFallback(img);
  });

  var list = document.querySelector("ul.messages[data-live]");
  if (!list || !window.EventSource) return;

  var url = new URL(window.location.href);
  url.search = "";
  url.hash = "";
  url.searchParams.set("after", list.getAttribute("data-live"));
  var source = new EventSource(url.toString());
  // A page the browser keeps for going back would otherwise hold its connection, and
  // browsers allow only six per site: close it on leaving, and reload on coming back.
  window.addEventListener("pagehide", function () { source.close(); });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });

  source.addEventListener("posted", function (event) {
    // The server rendered and escaped this item exactly as it renders the page's own.
    var template = document.createElement("template");
    template.innerHTML = event.data;
    var item = template.content.firstElementChild;
    if (!item || !item.id || document.getElementById(item.id)) return;
    var placeholder = list.querySelector("li.empty");
    if (placeholder) placeholder.remove();
    item.classList.add("arrived");
    list.prepend(item);
  });

  source.addEventListener("hidden", function (event) {
    var item = document.getElementById("m-" + event.data);
    if (item) item.remove();
  });
})();
