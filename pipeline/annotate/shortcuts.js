// Action buttons and keyboard shortcuts of the annotation app. Every action goes to the server as
// one `action` input: {action, key, fields, nonce}. `key` names the form (trace view) it belongs to,
// so a doubled or stale action is recognised; `fields` are the form's values as shown right now.
// Also: the annotator's name is remembered in this browser, each new trace is shown from its top,
// and "Use in the form" (a disputed trace's decisions side by side) fills the form with one of them.
(function () {
  const NAME_KEY = "flywheel.annotator";

  function form() { return document.querySelector("[data-form-key]"); }

  function value(root, selector) {
    const el = root.querySelector(selector);
    return el ? el.value : null;
  }

  function send(action) {
    const root = form();
    const fields = root ? {
      label: value(root, "input[type=radio][name^='label_']:checked"),
      mode: value(root, "select[id^='mode_']"),
      newmode: value(root, "input[id^='newmode_']"),
      critique: value(root, "textarea[id^='critique_']"),
      correction: value(root, "textarea[id^='correction_']"),
    } : {};
    Shiny.setInputValue("action", {action: action, key: root ? root.dataset.formKey : null, fields: fields,
                                   nonce: Math.random()}, {priority: "event"});
  }

  function pick(label) {
    const radio = document.querySelector("input[type=radio][name^='label_'][value='" + label + "']");
    if (radio) radio.click();
  }

  function focus(prefix) {
    const el = document.querySelector("[id^='" + prefix + "']");
    if (el) el.focus();
  }

  function resetCorrection() {
    const root = form();
    const box = root && root.querySelector("textarea[id^='correction_']");
    if (!box) return;
    box.value = root.dataset.baseline;
    box.dispatchEvent(new Event("change", {bubbles: true}));
  }

  // A form field set as if typed, so Shiny (and the live checks) see the new value.
  function setField(el, text) {
    if (!el) return;
    el.value = text;
    el.dispatchEvent(new Event("input", {bubbles: true}));
    el.dispatchEvent(new Event("change", {bubbles: true}));
  }

  // Fill the form with a decision shown side by side: label, failure mode (a new one when the
  // list lacks it), critique and correction (the output when the decision has none).
  function adopt(button) {
    const root = form();
    if (!root) return;
    const d = button.dataset;
    pick(d.label);
    const select = root.querySelector("select[id^='mode_']");
    const known = !d.mode || (select && Array.from(select.options).some((o) => o.value === d.mode));
    setField(select, known ? d.mode : "");
    setField(root.querySelector("input[id^='newmode_']"), known ? "" : d.mode);
    setField(root.querySelector("textarea[id^='critique_']"), d.critique);
    setField(root.querySelector("textarea[id^='correction_']"), d.correction || root.dataset.baseline);
  }

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
                  (el.tagName === "INPUT" && el.type !== "radio" && el.type !== "checkbox"));
  }

  // Every scrolling box holding the trace back at its top (the page and bslib's main area).
  function toTop() {
    for (let el = document.getElementById("trace"); el; el = el.parentElement) el.scrollTop = 0;
    document.querySelectorAll(".form-column").forEach((el) => { el.scrollTop = 0; });
    window.scrollTo(0, 0);
  }

  const keys = {
    g: () => pick("good"), b: () => pick("bad"), s: () => send("save"), u: () => send("undo"),
    n: () => send("next"), j: () => send("next"), p: () => send("previous"), k: () => send("previous"),
    e: () => focus("correction_"), c: () => focus("critique_"),
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (button) { event.preventDefault(); send(button.dataset.action); return; }
    const decision = event.target.closest("[data-adopt]");
    if (decision) { event.preventDefault(); adopt(decision); return; }
    if (event.target.closest("[data-reset]")) { event.preventDefault(); resetCorrection(); }
  });

  document.addEventListener("keydown", (event) => {
    const root = form();
    if (root && root.offsetParent === null) return;  // another tab is open: the form is hidden
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") { event.preventDefault(); send("save"); return; }
    if (event.key === "Escape" && document.activeElement) { document.activeElement.blur(); return; }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const run = keys[event.key];
    if (run) { event.preventDefault(); run(); }
  });

  // The name field starts with the name this browser remembers (before Shiny reads the inputs)
  // and remembers every change.
  document.addEventListener("DOMContentLoaded", () => {
    const name = document.getElementById("annotator");
    if (name) {
      const saved = window.localStorage.getItem(NAME_KEY);
      if (saved) name.value = saved;
      const remember = () => window.localStorage.setItem(NAME_KEY, name.value.trim());
      name.addEventListener("input", remember);
      name.addEventListener("change", remember);
    }
    let pendingTop = false;
    Shiny.addCustomMessageHandler("flywheel-scroll-top", (message) => { pendingTop = true; toTop(); });
    // once the new trace is in the page too (it may arrive after the message)
    window.jQuery(document).on("shiny:value", (event) => {
      if (pendingTop && event.name === "trace") { pendingTop = false; setTimeout(toTop, 0); }
    });
  });
})();
