// Widgets that speak, on the book's pages (issue 16). ipywidgets 8 draws a slider's handle with
// role=slider but no name, and announces the option's position ("1") instead of the value shown
// ("4"); its toggle buttons say "on" or "off" without naming what they switch or whether they
// are pressed. Python cannot reach those attributes, so this script sets them once for every page:
// - a slider handle, a group of toggle buttons: aria-labelledby its visible label;
// - a slider handle: aria-valuetext, the readout with the label's noun ("4 heads", "batch 4");
// - a toggle button: aria-pressed, true for the selected one.
// The widgets render after "load" and change on every move, so a MutationObserver re-applies the
// attributes whenever the widgets' DOM changes; it writes only attributes that differ, so its
// own writes settle at once.
(function () {
  var count = 0;

  function labelId(widget) {
    var label = widget.querySelector(":scope > .widget-label");
    if (!label || !label.textContent.trim()) {
      return null;
    }
    if (!label.id) {
      count += 1;
      label.id = "widget-label-" + count;
    }
    return label.id;
  }

  function set(element, name, value) {
    if (element.getAttribute(name) !== value) {
      element.setAttribute(name, value);
    }
  }

  // "heads h" -> "heads": a trailing one-letter symbol is notation, not part of the noun.
  // A plural noun counts what the value is ("4 heads", "8192 tokens"); any other noun names it
  // ("batch 4", "head 2", "mask causal").
  function valueText(label, readout) {
    var noun = label.replace(/\s+[A-Za-z]$/, "");
    return /s$/.test(noun) ? readout + " " + noun : noun + " " + readout;
  }

  function slider(widget) {
    var id = labelId(widget);
    var handle = widget.querySelector(".noUi-handle");
    var readout = widget.querySelector(".widget-readout");
    if (!id || !handle) {
      return;
    }
    set(handle, "aria-labelledby", id);
    if (readout && readout.textContent.trim()) {
      var label = document.getElementById(id).textContent.trim();
      set(handle, "aria-valuetext", valueText(label, readout.textContent.trim()));
    }
  }

  function toggles(widget) {
    var id = labelId(widget);
    var group = widget.querySelector(":scope > div");
    if (!id || !group) {
      return;
    }
    set(group, "role", "group");
    set(group, "aria-labelledby", id);
    group.querySelectorAll("button.widget-toggle-button").forEach(function (button) {
      set(button, "aria-pressed", String(button.classList.contains("mod-active")));
    });
  }

  function apply() {
    document.querySelectorAll(".widget-slider").forEach(slider);
    document.querySelectorAll(".widget-toggle-buttons").forEach(toggles);
  }

  function start() {
    apply();
    new MutationObserver(apply).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ["class", "aria-valuetext"],
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
