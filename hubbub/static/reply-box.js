// Fills the reply box with a prepared text (a playbook's suggested reply, the crisis holding
// statement). Loaded as a file: the CSP forbids inline scripts.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".use-statement");
  if (!button) return;
  const box = document.getElementById(button.dataset.target);
  if (!box) return;
  box.value = button.dataset.statement;
  box.focus();
});
