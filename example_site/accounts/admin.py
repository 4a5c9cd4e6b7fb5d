"""A plain admin, so the demo's result can be browsed next to the scheduler's tables."""

from __future__ import annotations

from django.contrib import admin

from .models import UserAccount


@admin.register(UserAccount)
class UserAccountAdmin(admin.ModelAdmin):
    list_display = ["email", "created_at", "email_sent_at", "deleted_at"]
    list_filter = [
        ("email_sent_at", admin.EmptyFieldListFilter),
        ("deleted_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["email"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]
