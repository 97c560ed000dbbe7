from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import gpu_views, logins, owner_views, report_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", logins.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("p/<slug:slug>/", views.overview, name="overview"),
    path("p/<slug:slug>/traces/", views.traces, name="traces"),
    path("p/<slug:slug>/traces/<str:trace_id>/", views.trace_detail, name="trace"),
    path("p/<slug:slug>/traces/<str:trace_id>/children", views.trace_children, name="trace-children"),
    path("p/<slug:slug>/traces/<str:trace_id>/delete", owner_views.trace_delete, name="trace-delete"),
    path("p/<slug:slug>/traces/<str:trace_id>/spans/<str:span_id>", views.span_panel, name="span-panel"),
    path("p/<slug:slug>/agents/", views.agents, name="agents"),
    path("p/<slug:slug>/models/", views.models, name="models"),
    path("p/<slug:slug>/prices/", views.prices, name="prices"),
    path("p/<slug:slug>/gpus/", gpu_views.gpus, name="gpus"),
    path("p/<slug:slug>/prices/add", views.price_add, name="price-add"),
    path("p/<slug:slug>/prices/<int:price_id>/delete", views.price_delete, name="price-delete"),
    path("p/<slug:slug>/settings/", views.settings_page, name="settings"),
    path("p/<slug:slug>/settings/members", views.member_save, name="member-save"),
    path("p/<slug:slug>/settings/members/<int:member_id>/remove", views.member_remove, name="member-remove"),
    path("p/<slug:slug>/settings/keys", views.key_create, name="key-create"),
    path("p/<slug:slug>/settings/keys/<int:key_id>/revoke", views.key_revoke, name="key-revoke"),
    path("p/<slug:slug>/settings/keys/<int:key_id>/split", views.key_split, name="key-split"),
    # Owners: deletion on request and the audit log (dashboard/owner_views.py)
    path("p/<slug:slug>/settings/delete", owner_views.data_delete_form, name="data-delete"),
    path("p/<slug:slug>/audit/", owner_views.audit_page, name="audit"),
    path("p/<slug:slug>/audit.csv", owner_views.audit_csv, name="audit-csv"),
    # Reports (dashboard/report_views.py)
    path("p/<slug:slug>/export/<str:kind>.csv", report_views.export_csv, name="export"),
    path("p/<slug:slug>/reports/", report_views.roi_page, name="roi"),
    path("p/<slug:slug>/reports/roi/run", report_views.roi_start, name="roi-start"),
    path("p/<slug:slug>/reports/roi/values", report_views.roi_value, name="roi-value"),
    path("p/<slug:slug>/reports/roi/<int:run_id>/", report_views.roi_run, name="roi-run"),
    path("p/<slug:slug>/reports/roi/<int:run_id>.csv", report_views.roi_run_csv, name="roi-run-csv"),
    path("p/<slug:slug>/reports/waste/", report_views.waste_page, name="waste"),
    path("p/<slug:slug>/reports/whatif/", report_views.whatif_page, name="whatif"),
    path("p/<slug:slug>/reports/budgets/", report_views.budgets_page, name="budgets"),
    path("p/<slug:slug>/reports/budgets/save", report_views.budget_save, name="budget-save"),
    path("p/<slug:slug>/reports/budgets/delete", report_views.budget_delete, name="budget-delete"),
    path(
        "p/<slug:slug>/reports/budgets/webhook-rotate", report_views.budget_webhook_rotate, name="budget-webhook-rotate"
    ),
]
