from __future__ import annotations

from django import forms

from hubbub.accounts.models import Department, Organization
from hubbub.lib.query import MAX_QUERY, QuerySyntaxError, parse


class QueryForm(forms.Form):
    name = forms.CharField(max_length=100)
    query = forms.CharField(max_length=MAX_QUERY, strip=False, widget=forms.Textarea(attrs={"rows": 4}))
    enabled = forms.BooleanField(required=False, initial=True)
    department = forms.ModelChoiceField(
        queryset=Department.objects.none(), required=False, empty_label="(as the playbook decides)"
    )

    def __init__(self, organization: Organization, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only this organization's departments can be chosen: another's id is "not one of the choices".
        self.fields["department"].queryset = Department.objects.filter(organization=organization).order_by("name")
        self.syntax_error: QuerySyntaxError | None = None

    def clean_query(self) -> str:
        query = self.cleaned_data["query"]
        try:
            parse(query)
        except QuerySyntaxError as exc:
            self.syntax_error = exc
            raise forms.ValidationError(exc.message) from None
        return query
