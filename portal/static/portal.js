// Progressive help for the portal's pages; every page works without it.
// Menu button on phones, copy buttons, sortable and filterable tables with a CSV export of the shown rows.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function menu() {
    var button = document.querySelector(".menu-button");
    var nav = document.getElementById("site-nav");
    if (!button || !nav) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-copy"));
        if (!target) return;
        var text = target.value !== undefined && target.tagName !== "CODE" ? target.value : target.textContent;
        var done = function () {
          var label = button.textContent;
          button.textContent = document.documentElement.getAttribute("data-copied") || "Copied";
          setTimeout(function () { button.textContent = label; }, 1500);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, done);
        } else {
          var area = document.createElement("textarea");
          area.value = text;
          area.setAttribute("readonly", "");
          area.style.position = "absolute";
          area.style.left = "-9999px";
          document.body.appendChild(area);
          area.select();
          try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
          document.body.removeChild(area);
          done();
        }
      });
    });
  }

  function cellValue(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw !== null) return raw;
    return cell.textContent.trim();
  }

  function compare(a, b) {
    var na = parseFloat(a.replace(/[^0-9.\-]/g, ""));
    var nb = parseFloat(b.replace(/[^0-9.\-]/g, ""));
    if (!isNaN(na) && !isNaN(nb) && /^[\-0-9,. ]+[A-Z%]*$/.test(a.trim()) && /^[\-0-9,. ]+[A-Z%]*$/.test(b.trim())) {
      return na - nb;
    }
    return a.localeCompare(b);
  }

  function csvOf(table) {
    var lines = [];
    table.querySelectorAll("tr").forEach(function (row) {
      if (row.hidden) return;
      var cells = [];
      row.querySelectorAll("th, td").forEach(function (cell) {
        var text = cell.textContent.trim().replace(/\s+/g, " ");
        // A spreadsheet runs a cell starting like a formula: such text goes out with a leading apostrophe.
        if (/^[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]/.test(text) && !/^-?[0-9][0-9,.]*( [A-Z]{3}| %)?$/.test(text)) {
          text = "'" + text;
        }
        cells.push(/[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text);
      });
      lines.push(cells.join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function tables() {
    document.querySelectorAll("table.data").forEach(function (table) {
      var body = table.tBodies[0];
      if (!body) return;
      var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains("empty"); });
      var headers = table.tHead ? table.tHead.rows[0].cells : [];
      Array.prototype.forEach.call(headers, function (th, index) {
        if (!th.textContent.trim() || th.hasAttribute("data-nosort")) return;
        var button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        button.textContent = th.textContent.trim();
        th.textContent = "";
        th.appendChild(button);
        th.setAttribute("aria-sort", "none");
        button.addEventListener("click", function () {
          var ascending = th.getAttribute("aria-sort") !== "ascending";
          Array.prototype.forEach.call(headers, function (h) { if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none"); });
          th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          rows.sort(function (a, b) {
            var x = a.cells[index] ? cellValue(a.cells[index]) : "";
            var y = b.cells[index] ? cellValue(b.cells[index]) : "";
            return ascending ? compare(x, y) : compare(y, x);
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
      var tools = document.createElement("div");
      tools.className = "table-tools";
      var id = table.id || ("t" + Math.random().toString(36).slice(2));
      table.id = id;
      // The labels come translated from the page (portal/templates/_form.html table_open), English otherwise.
      var filterLabel = table.getAttribute("data-filter-label") || "Filter";
      var csvLabel = table.getAttribute("data-csv-label") || "Download CSV of these rows";
      tools.innerHTML = '<label for="' + id + '-filter"></label><input id="' + id + '-filter" type="search" data-filter>' +
        ' <button type="button" class="secondary" data-csv></button>';
      tools.querySelector("label").textContent = filterLabel;
      tools.querySelector("[data-csv]").textContent = csvLabel;
      var wrap = table.closest(".table-wrap") || table;
      wrap.parentNode.insertBefore(tools, wrap);
      tools.querySelector("[data-filter]").addEventListener("input", function (event) {
        var needle = event.target.value.toLowerCase();
        rows.forEach(function (r) { r.hidden = needle !== "" && r.textContent.toLowerCase().indexOf(needle) < 0; });
      });
      tools.querySelector("[data-csv]").addEventListener("click", function () {
        var blob = new Blob([csvOf(table)], { type: "text/csv" });
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = (table.getAttribute("data-name") || id) + ".csv";
        document.body.appendChild(a);
        a.click();
        setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
      });
    });
  }

  function rangeForm() {
    // The custom range fields only matter when "custom" is picked; the form works without this.
    var preset = document.querySelector("select[name=range]");
    var custom = document.querySelector(".custom-range");
    if (!preset || !custom) return;
    var sync = function () { custom.hidden = preset.value !== "custom"; };
    preset.addEventListener("change", sync);
    sync();
  }

  function planEditors() {
    // Only the ticked models' fields, and a plain-language preview of what partners earn, as they type.
    document.querySelectorAll("[data-plan]").forEach(function (plan) {
      var prefix = plan.getAttribute("data-prefix") || "";
      var currency = plan.getAttribute("data-currency") || "";
      var form = plan.closest("form");
      var preview = plan.querySelector("[data-preview]");
      var value = function (name) {
        var el = form.querySelector("[name='" + prefix + name + "']");
        return el ? el.value.trim() : "";
      };
      var ticked = function (model) {
        var el = form.querySelector("[name='" + prefix + "m_" + model + "']");
        return !!(el && el.checked);
      };
      var sync = function () {
        plan.querySelectorAll("[data-model]").forEach(function (group) {
          group.hidden = !ticked(group.getAttribute("data-model"));
        });
        var parts = [];
        if (ticked("markup")) parts.push("their retail price minus your wholesale price on each unit");
        if (ticked("cps") && value("cps_percent")) parts.push(value("cps_percent").replace(/\s*%$/, "") + " % of each sale");
        for (var i = 1; i <= 20; i++) {
          if (ticked("cps") && value("tier_percent_" + i)) {
            var after = value("tier_min_sales_" + i) ? value("tier_min_sales_" + i) + " sales" : value("tier_min_amount_" + i) + " " + currency;
            parts.push(value("tier_percent_" + i) + " % past " + after + " in a month");
          }
          if (ticked("cpa") && value("cpa_action_" + i) && value("cpa_amount_" + i)) {
            parts.push(value("cpa_amount_" + i) + " " + currency + " per " + value("cpa_action_" + i));
          }
        }
        if (ticked("cpc") && value("cpc")) parts.push(value("cpc") + " " + currency + " per unique click");
        if (ticked("cpm") && value("cpm")) parts.push(value("cpm") + " " + currency + " per 1,000 views");
        if (ticked("cpv") && value("cpv")) parts.push(value("cpv") + " " + currency + " per view");
        var hold = form.querySelector("[name=hold_days]");
        var text = parts.length ? "Partners earn " + parts.join(" + ") : "Tick a model to see what partners earn.";
        if (parts.length && hold && hold.value) text += ", paid " + hold.value + " days after the sale";
        if (preview) preview.textContent = parts.length ? text + "." : text;
      };
      form.addEventListener("input", sync);
      form.addEventListener("change", sync);
      sync();
    });
  }

  ready(function () { menu(); copyButtons(); tables(); rangeForm(); planEditors(); });
})();
