// Fills the reply box with the crisis holding statement. Loaded as a file: the CSP forbids inline scripts.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".crisis-use-statement");
  if (!button) return;
  const box = document.getElementById(button.dataset.target);
  if (!box) return;
  box.value = button.dataset.statement;
  box.focus();
});
