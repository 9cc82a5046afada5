"""Admin for the analyst models: saved views (read and delete; owners edit them on the site)."""

from django.contrib import admin


class SavedViewAdmin(admin.ModelAdmin):
    list_display = ("name", "page", "owner", "query", "updated_at")
    list_filter = ("page",)
    search_fields = ("name", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "page", "query", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False  # views are saved from the page whose filters they keep
