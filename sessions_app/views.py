"""Dashboard pages. Each view serves its page and, for HTMX requests, just the partial."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def overview(request):
    """The overview page: KPIs and charts."""
    return render(request, "dashboard/overview.html", {"active_nav": "overview"})
