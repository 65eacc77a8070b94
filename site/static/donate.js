// The donation form without a reload: the currency follows the choice, a typed amount
// selects "another amount", and the card-fee estimate follows the gift. The form works
// the same without this script; the server computes the same estimate.
(function () {
  "use strict";
  // What only this script keeps true (currency signs, the worked-out fee) is shown only
  // with it: site.css hides it on pages without the "js" class.
  document.documentElement.classList.add("js");

  // Reaching Stripe can take many seconds: the button says so, and a second press does
  // not send the gift again.
  document.querySelectorAll("form").forEach(function (each) {
    var button = each.querySelector("button[type=submit][data-busy-text]");
    if (!button) { return; }
    var status = each.querySelector(".submit-status");
    var label = button.textContent;
    var sent = false;
    each.addEventListener("submit", function (event) {
      if (sent) { event.preventDefault(); return; }
      sent = true;
      // aria-disabled, not disabled: a disabled button would drop the keyboard's focus
      // to the page; a second press is refused above all the same.
      button.setAttribute("aria-disabled", "true");
      button.textContent = button.getAttribute("data-busy-text");
      if (status) { status.textContent = button.textContent; }
    });
    // Back from Stripe, a browser may show this page as it was left: usable again.
    window.addEventListener("pageshow", function () {
      sent = false;
      button.removeAttribute("aria-disabled");
      button.textContent = label;
      if (status) { status.textContent = ""; }
    });
  });

  var form = document.querySelector(".donate-form[data-donate]");
  if (!form) { return; }
  var settings = JSON.parse(form.getAttribute("data-donate"));
  var currency = form.querySelector("select[name=currency]");
  var other = form.querySelector("input[name=other_amount]");
  var otherRadio = form.querySelector("input[name=amount][value=other]");
  var example = form.querySelector(".fee-example");

  function info() {
    return settings.currencies[currency.value] || { symbol: "", exponent: 2, signs: "" };
  }

  function money(minor) {
    var cur = info();
    var major = minor / Math.pow(10, cur.exponent);
    return cur.symbol + major.toLocaleString("en-GB", {
      minimumFractionDigits: cur.exponent, maximumFractionDigits: cur.exponent
    });
  }

  // Any decimal digit as its ASCII one, as the server's \d and Decimal read them: ３０ is 30.
  // Unicode keeps each script's digits together, 0 to 9, so a digit's value is its distance
  // from the first digit of its run, modulo 10 where runs follow one another.
  function asciiDigits(text) {
    return text.replace(/\p{Nd}/gu, function (digit) {
      var code = digit.codePointAt(0), first = code;
      while (/\p{Nd}/u.test(String.fromCodePoint(first - 1))) { first -= 1; }
      return String((code - first) % 10);
    });
  }

  function strip(text, sign) {
    while (text.charAt(0) === sign) { text = text.slice(1); }
    while (text.slice(-1) === sign) { text = text.slice(0, -1); }
    return text;
  }

  // The amount in minor units read by the server's own rules (money.parse_amount), or null
  // where the server would refuse it: a sign or code of another currency, a thousands
  // separator, more decimal places than the currency has.
  function parse(typed) {
    var cur = info();
    var text = asciiDigits(typed.trim()).replace(/\s/g, "");  // any space, as the server
    for (var i = 0; i < settings.signs.length; i++) {
      var sign = settings.signs.charAt(i);
      if (text.indexOf(sign) < 0) { continue; }
      if (cur.signs.indexOf(sign) < 0) { return null; }
      text = strip(text, sign);
    }
    // No cents, as "25,-" or "25,–" writes it (money._NO_CENTS).
    text = text.replace(/(\d)[.,][-\u2013](?=(?:[A-Za-z]{3})?$)/, "$1");
    var coded = /^([A-Za-z]{3})?([\d.,]+)([A-Za-z]{3})?$/.exec(text);
    if (coded) {
      var codes = [coded[1], coded[3]].filter(Boolean);
      if (codes.some(function (c) { return c.toUpperCase() !== currency.value; })) { return null; }
      text = coded[2];
    }
    var amount = /^(\d{1,9})(?:[.,](\d+))?$/.exec(text);
    if (!amount) { return null; }
    var fraction = amount[2] || "";
    if (fraction.length === 3 || fraction.length > cur.exponent) { return null; }
    while (fraction.length < cur.exponent) { fraction += "0"; }
    return parseInt(amount[1], 10) * Math.pow(10, cur.exponent) + parseInt(fraction || "0", 10);
  }

  // The gift in minor units, or null when what is chosen is not one the server takes.
  function gift() {
    var chosen = form.querySelector("input[name=amount]:checked");
    // As on the server, an amount typed in wins over a preset left chosen.
    var text = other.value.trim() || (chosen && chosen.value !== "other" ? chosen.value : "");
    var minor = text ? parse(text) : null;
    var cur = info();
    return minor !== null && minor >= cur.minimum && minor <= cur.maximum ? minor : null;
  }

  function fee(minor) {
    var cur = info();
    // The fixed part in whole minor units, as the server counts it (money.card_fee).
    var total = (minor + cur.fixed_minor) / (1 - parseFloat(settings.percent) / 100);
    return Math.ceil(total - 1e-9) - minor;
  }

  // Only the presets the chosen currency takes; one no longer offered is no longer chosen.
  // The error summary's link to the amounts lands on the first one shown, as the server
  // made it for the currency the page came with ("Other" when no preset is offered).
  function offerPresets() {
    var offered = info().presets || [];
    form.querySelectorAll(".amount-choice input[name=amount]").forEach(function (radio) {
      var hidden = offered.indexOf(radio.value) < 0;
      radio.closest(".amount-choice").hidden = hidden;
      if (hidden) { radio.checked = false; }
    });
    var first = form.querySelector(".amount-choice:not([hidden]) input") || otherRadio;
    form.querySelectorAll(".error-summary a[href^='#']").forEach(function (link) {
      var target = document.getElementById(link.getAttribute("href").slice(1));
      if (target && target.name === "amount") { link.setAttribute("href", "#" + first.id); }
    });
  }

  function update() {
    var cur = info();
    // A code keeps its number on its line with a no-break space ("CHF 0.25"). A preset's
    // button never breaks, and stands its code above the number (site.css), where that
    // space would push the code off centre: there it is a plain one, which drops out.
    var buttonSymbol = cur.symbol.replace(/\u00a0/g, " ");
    form.querySelectorAll(".cur-sym").forEach(function (el) {
      el.textContent = el.closest(".amount-choice") ? buttonSymbol : cur.symbol;
    });
    form.querySelectorAll(".amount-grid").forEach(function (el) {
      el.classList.toggle("code-symbol", cur.symbol.trim().length > 1);
    });
    form.querySelectorAll(".cur-code").forEach(function (el) { el.textContent = currency.value; });
    form.querySelectorAll(".fee-fixed").forEach(function (el) { el.textContent = cur.fixed; });
    if (!example) { return; }
    var minor = gift();
    if (minor === null) { example.textContent = ""; return; }
    var monthly = form.querySelector("input[name=frequency][value=monthly]:checked");
    example.textContent = "On " + money(minor) + " that adds " + money(fee(minor)) +
      (monthly ? " a month." : ".");
  }

  other.addEventListener("input", function () {
    if (other.value.trim() && otherRadio) { otherRadio.checked = true; }
    update();
  });
  // "Other amount" clicked means an amount is typed next: the box takes the focus. Reached
  // with the arrow keys it does not, or the arrows could not go on round the amounts.
  var pointing = false;
  form.addEventListener("pointerdown", function () { pointing = true; });
  form.addEventListener("keydown", function () { pointing = false; });
  form.querySelectorAll("input[name=amount]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (radio.value !== "other") { other.value = ""; } else if (pointing) { other.focus(); }
      update();
    });
  });
  form.querySelectorAll("input[name=frequency]").forEach(function (radio) {
    radio.addEventListener("change", update);
  });
  function follow() {
    offerPresets();
    update();
  }
  currency.addEventListener("change", follow);
  // A browser may bring back another currency, amount or frequency than the page was made
  // for: now, or (back from Stripe, the page made again) only once it is shown, without
  // telling the fields' own events.
  follow();
  window.addEventListener("pageshow", follow);
})();
