// Private messages, live, on the pages of a signed-in user; the pages work without this
// script (a form posts the message, a reload shows new ones), only less well.
//
// One server-sent event stream (/chat/live) carries this user's chat updates: `message` (to
// or from them) and `read` (their own read marks). On every page it keeps the unread count in
// the navigation current. On a conversation's newest page (older pages are left as they are)
// it also opens at the newest message, appends new messages of that conversation, marks them
// read while the page is visible, and sends from the box without a reload, telling the box's
// keys and, near the limit, how many characters are left. Texts are only ever put into the
// page as text, never as markup.
(function () {
  "use strict";

  if (!window.EventSource || !window.fetch) return;

  var badge = document.querySelector("[data-unread]");
  var inbox = document.querySelector("ul[data-chat-inbox]");
  var chat = document.querySelector("ol[data-chat]");

  function json(url, body) {
    return fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  }

  function refreshUnread() {
    json("/chat/inbox")
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || !badge) return;
        // The count only: the words beside it ("unread", for screen readers) stay.
        badge.querySelector("[data-unread-count]").textContent = String(answer.unread);
        badge.hidden = answer.unread === 0;
      })
      .catch(function () {});
  }

  // The inbox page is the server's own rendering: fetch it again and take its list.
  function refreshInbox() {
    fetch("/messages", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var page = new DOMParser().parseFromString(html, "text/html");
        var list = page.querySelector("ul[data-chat-inbox]");
        if (list) inbox.replaceChildren.apply(inbox, Array.from(list.children));
      })
      .catch(function () {});
  }

  var partner = chat && chat.getAttribute("data-partner");
  var me = chat && chat.getAttribute("data-me");
  var conversationUrl = chat && "/chat/with/" + encodeURIComponent(partner);

  function newestNumber(fromPartnerOnly) {
    var items = chat.querySelectorAll(fromPartnerOnly ? "li.theirs" : "li[data-number]");
    var last = items[items.length - 1];
    return last ? Number(last.getAttribute("data-number")) : 0;
  }

  // What the pages show in place of a text whose sender was forgotten.
  var REMOVED = "message removed";

  // `YYYY-MM-DD @ HH:MM` in UTC, as the pages show dates.
  function shownDate(iso) {
    return iso.slice(0, 10) + " @ " + iso.slice(11, 16);
  }

  function append(message) {
    if (document.getElementById("pm-" + message.number)) return;
    var item = document.createElement("li");
    item.id = "pm-" + message.number;
    item.setAttribute("data-number", String(message.number));
    item.className = (message.sender === me ? "mine" : "theirs") + " arrived";
    var text = document.createElement("p");
    if (message.removed) {
      text.className = "removed";
      text.textContent = REMOVED;
    } else {
      text.textContent = message.content;
    }
    var small = document.createElement("small");
    var time = document.createElement("time");
    time.setAttribute("datetime", message.sent_at);
    time.textContent = shownDate(message.sent_at);
    small.appendChild(time);
    item.append(text, small);
    var placeholder = chat.querySelector("li.empty");
    if (placeholder) placeholder.remove();
    // Numbers give the order; a late arrival goes before any later message.
    var later = Array.from(chat.querySelectorAll("li[data-number]")).find(function (other) {
      return Number(other.getAttribute("data-number")) > message.number;
    });
    chat.insertBefore(item, later || null);
    item.scrollIntoView({ block: "nearest" });
  }

  function markRead() {
    var upTo = newestNumber(true);
    if (document.visibilityState !== "visible" || upTo === 0) return;
    json(conversationUrl + "/read", { up_to: upTo }).then(refreshUnread).catch(function () {});
  }

  function isThisConversation(message) {
    return (message.sender === partner && message.recipient === me) ||
      (message.sender === me && message.recipient === partner);
  }

  // What the stream may have carried before it was (re)opened: the newest page again.
  function catchUp() {
    json(conversationUrl)
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (!page) return;
        page.messages.slice().reverse().forEach(append);
        markRead();
      })
      .catch(function () {});
  }

  var source = new EventSource("/chat/live");
  // A page the browser keeps for going back would otherwise hold its connection, and
  // browsers allow only six per site: close it on leaving, and reload on coming back.
  window.addEventListener("pagehide", function () { source.close(); });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) window.location.reload();
  });
  source.addEventListener("open", function () {
    refreshUnread();
    if (inbox) refreshInbox();
    if (chat) catchUp();
  });
  source.addEventListener("message", function (event) {
    var message = JSON.parse(event.data);
    if (chat && isThisConversation(message)) {
      append(message);
      if (message.sender === partner) markRead();
    }
    if (inbox) refreshInbox();
    refreshUnread();
  });
  source.addEventListener("read", function () {
    if (inbox) refreshInbox();
    refreshUnread();
  });

  if (!chat) return;
  document.addEventListener("visibilitychange", markRead);
  // A conversation reads down to its newest message and the box: it opens there, with the
  // older messages above.
  window.scrollTo(0, document.documentElement.scrollHeight);

  var form = document.querySelector("form.chatbox");
  // Nowhere to write: the partner deleted their account, or may not be written to.
  if (!form) return;
  var box = form.querySelector("textarea");
  var error = form.querySelector(".chat-error");
  // Without this script Enter starts a new line: the keys are told only where they work.
  var keys = form.querySelector(".chat-keys");
  keys.hidden = false;
  box.setAttribute("aria-describedby", keys.id);

  // What is left is shown in the last hundred characters; the box takes no more than its
  // maxlength. Screen readers hear it once typing pauses, not at every key.
  var limit = Number(box.getAttribute("maxlength"));
  var count = form.querySelector(".chat-count");
  var countStatus = form.querySelector(".chat-count-status");
  var announcing = null;
  function showCount() {
    var left = limit - box.value.length;
    var near = left <= 100;
    var text = left === 1 ? "1 character left" : left + " characters left";
    count.hidden = !near;
    count.textContent = near ? text : "";
    clearTimeout(announcing);
    announcing = setTimeout(function () { countStatus.textContent = near ? text : ""; }, 1000);
  }
  box.addEventListener("input", showCount);

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    // Even a blank message goes to the server, whose refusal says what is wrong.
    var content = box.value;
    box.disabled = true;
    json(conversationUrl, { content: content })
      .then(function (response) {
        if (response.ok) {
          box.value = "";
          showCount();
          error.hidden = true;
          return null;
        }
        return response.json().then(function (answer) {
          error.textContent = answer.error_msg || "The message could not be sent.";
          error.hidden = false;
        });
      })
      .catch(function () {
        error.textContent = "The message could not be sent; please try again.";
        error.hidden = false;
      })
      .then(function () {
        box.disabled = false;
        box.focus();
      });
  });
  // Enter sends; Shift+Enter starts a new line.
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
