from django.conf import settings
from django.db import models

from hubbub.accounts.models import Department, Organization
from hubbub.lib.query import MAX_QUERY, parse


class ListeningQuery(models.Model):
    """A saved search that decides which posts from open streams concern the organization.

    The text is always valid in the query language (hubbub.lib.query): `save()` refuses
    anything else, so the worker never meets a query it cannot compile.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="listening_queries")
    name = models.CharField(max_length=100)
    query = models.TextField(max_length=MAX_QUERY)
    enabled = models.BooleanField(default=True)
    # Where matches go; empty leaves it to the playbook.
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.SET_NULL, related_name="listening_queries"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped on every save: with the count and the highest id it tells a worker its compiled
    # matcher is stale even when clocks of several machines disagree about updated_at.
    revision = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="listening_query_unique_name"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Raises QuerySyntaxError (with the position) rather than storing a query the worker
        # would have to skip.
        parse(self.query)
        if self.department_id is not None and self.department.organization_id != self.organization_id:
            raise ValueError("a listening query can only route to its own organization's departments")
        self.revision += 1
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "revision", "updated_at"}
        super().save(*args, **kwargs)
