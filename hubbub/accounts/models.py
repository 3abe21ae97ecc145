from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
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


class Availability(models.TextChoices):
    ONLINE = "online", "Online"
    AWAY = "away", "Away"


def _string_list(value, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and 0 < len(item) <= 40 for item in value):
        raise ValidationError({field: "a list of short names"})
    return sorted({item.strip().lower() for item in value if item.strip()})


class Membership(models.Model):
    """A user's place in an organization. Agents see only the departments listed here.

    Also the agent's routing state: whether they are taking work, how much, and what they may
    work. An empty skill list means "not restricted", so an organization that never sets skills
    routes as before.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AGENT)
    departments = models.ManyToManyField(Department, blank=True, related_name="members")
    availability = models.CharField(max_length=10, choices=Availability.choices, default=Availability.AWAY)
    availability_changed_at = models.DateTimeField(null=True, blank=True)
    # Most cases an agent holds open at once; "next case" gives nothing beyond it.
    capacity = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(200)])
    # Skills: language codes (en, fr), networks the agent is certified to post on publicly
    # (mastodon, twitter …) and topics (case intents such as complaint, purchase_intent).
    languages = models.JSONField(default=list, blank=True)
    channels = models.JSONField(default=list, blank=True)
    topics = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    def clean(self) -> None:
        self.languages = _string_list(self.languages, "languages")
        self.channels = _string_list(self.channels, "channels")
        self.topics = _string_list(self.topics, "topics")

    @property
    def is_online(self) -> bool:
        return self.availability == Availability.ONLINE

    @property
    def sees_all_departments(self) -> bool:
        return self.role == Role.ADMIN

    def visible_department_ids(self) -> set[int]:
        if self.sees_all_departments:
            return set(self.organization.departments.values_list("id", flat=True))
        return set(self.departments.values_list("id", flat=True))
