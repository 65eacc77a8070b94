// The donation form without a reload: the currency follows the choice, a typed amount
// selects "another amount", and the card-fee estimate follows the gift. The form works
// the same without this script; the server computes the same estimate.
(function () {
  "use strict";
  var form = document.querySelector(".donate-form[data-donate]");
  if (!form) { return; }
  var settings = JSON.parse(form.getAttribute("data-donate"));
  var currency = form.querySelector("select[name=currency]");
  var other = form.querySelector("input[name=other_amount]");
  var otherRadio = form.querySelector("input[name=amount][value=other]");
  var example = form.querySelector(".fee-example");

  function info() {
    return settings.currencies[currency.value] || { symbol: "", exponent: 2 };
  }

  function money(minor) {
    var cur = info();
    var major = minor / Math.pow(10, cur.exponent);
    return cur.symbol + major.toLocaleString("en-GB", {
      minimumFractionDigits: cur.exponent, maximumFractionDigits: cur.exponent
    });
  }

  // The gift in minor units, or null when what is typed is not yet an amount.
  function gift() {
    var cur = info();
    var typed = other.value.replace(/[\s\u00a0]/g, "").replace(",", ".");
    var chosen = form.querySelector("input[name=amount]:checked");
    var text = typed || (chosen && chosen.value !== "other" ? chosen.value : "");
    if (!/^\d+(\.\d+)?$/.test(text)) { return null; }
    return Math.round(parseFloat(text) * Math.pow(10, cur.exponent));
  }

  function fee(minor) {
    var cur = info();
    var fixed = Math.round(parseFloat(settings.fixed) * Math.pow(10, cur.exponent) * 1e6) / 1e6;
    var total = (minor + fixed) / (1 - parseFloat(settings.percent) / 100);
    return Math.ceil(total - 1e-9) - minor;
  }

  function update() {
    var cur = info();
    form.querySelectorAll(".cur-sym").forEach(function (el) { el.textContent = cur.symbol; });
    form.querySelectorAll(".cur-code").forEach(function (el) { el.textContent = currency.value; });
    var minor = gift();
    if (!example) { return; }
    if (minor === null || minor <= 0) { example.textContent = ""; return; }
    var monthly = form.querySelector("input[name=frequency][value=monthly]:checked");
    example.textContent = "On " + money(minor) + " that adds " + money(fee(minor)) +
      (monthly ? " a month." : ".");
  }

  other.addEventListener("input", function () {
    if (other.value.trim() && otherRadio) { otherRadio.checked = true; }
    update();
  });
  form.querySelectorAll("input[name=amount]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (radio.value === "other") { other.focus(); } else { other.value = ""; }
      update();
    });
  });
  form.querySelectorAll("input[name=frequency]").forEach(function (radio) {
    radio.addEventListener("change", update);
  });
  currency.addEventListener("change", update);
  update();
})();
