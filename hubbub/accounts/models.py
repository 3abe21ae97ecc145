from django.conf import settings
from django.db import models
from django.utils.text import slugify

# Seeded for every new organization; editable afterwards.
DEFAULT_DEPARTMENTS = [
    ("customer-service", "Customer service"),
    ("marketing", "Marketing"),
    ("sales", "Sales"),
    ("operations", "Operations"),
    ("hr", "HR"),
    ("legal", "Legal"),
    ("product", "Product"),
]


class Organization(models.Model):
    """A brand: its accounts, departments, cases and playbook belong to it."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)[:50]
        super().save(*args, **kwargs)


class Department(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="departments")
    slug = models.SlugField()
    name = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="department_unique_slug")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    SUPERVISOR = "supervisor", "Supervisor"
    ADMIN = "admin", "Admin"


class Membership(models.Model):
    """A user's place in an organization. Agents see only the departments listed here."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    departments = models.ManyToManyField(Department, blank=True, related_name="members")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def sees_all_departments(self) -> bool:
        return self.role == Role.ADMIN

    def visible_department_ids(self) -> set[int]:
        if self.sees_all_departments:
            return set(self.organization.departments.values_list("id", flat=True))
        return set(self.departments.values_list("id", flat=True))
