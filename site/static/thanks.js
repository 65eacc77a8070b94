// A gift waiting for Stripe's word: the thank-you page asks this site again every few
// seconds, a few times, and once the gift is no longer waiting shows and says what the
// site now knows. It only reads the page: Stripe's signed webhook alone marks a gift paid.
// Without this script, "Check again" does the same by hand.
(function () {
  "use strict";
  var section = document.querySelector(".donation-status[data-waiting]");
  var news = document.querySelector(".status-news");
  if (!section || !news || !window.fetch || !window.DOMParser) { return; }
  var EVERY = 3000;  // milliseconds
  var TRIES = 10;
  var tries = 0;

  function later() {
    if (tries < TRIES) { window.setTimeout(ask, EVERY); }
  }

  function show(fresh, title) {
    var hadFocus = section.contains(document.activeElement);
    var shown = document.importNode(fresh, true);
    section.replaceWith(shown);
    section = shown;
    // The window's title follows the news, as a page loaded afresh would have it.
    if (title) { document.title = title; }
    var heading = shown.querySelector("h1");
    if (!heading) { return; }
    // Said once, in short: the new heading and the sentence after it.
    var said = [heading.textContent.trim() + "."];
    var first = heading.nextElementSibling;
    if (first && first.tagName === "P") { said.push(first.textContent.trim()); }
    news.textContent = said.join(" ");
    if (hadFocus) {  // the link the keyboard was on is gone: its place is the news
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  function ask() {
    tries += 1;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelector(".donation-status");
        if (fresh && !fresh.hasAttribute("data-waiting")) { show(fresh, page.title); } else { later(); }
      }, later);
  }

  later();
})();
