// Action buttons and keyboard shortcuts of the annotation app. Every action goes to the server as
// one `action` input: {action, key, fields, nonce}. `key` names the form (trace view) it belongs to,
// so a doubled or stale action is recognised; `fields` are the form's values as shown right now.
(function () {
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

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
                  (el.tagName === "INPUT" && el.type !== "radio" && el.type !== "checkbox"));
  }

  const keys = {
    g: () => pick("good"), b: () => pick("bad"), s: () => send("save"), u: () => send("undo"),
    n: () => send("next"), j: () => send("next"), p: () => send("previous"), k: () => send("previous"),
    e: () => focus("correction_"), c: () => focus("critique_"),
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (button) { event.preventDefault(); send(button.dataset.action); }
  });

  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") { event.preventDefault(); send("save"); return; }
    if (event.key === "Escape" && document.activeElement) { document.activeElement.blur(); return; }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const run = keys[event.key];
    if (run) { event.preventDefault(); run(); }
  });
})();
