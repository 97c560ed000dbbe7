from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("p/<slug:slug>/", views.overview, name="overview"),
    path("p/<slug:slug>/traces/", views.traces, name="traces"),
    path("p/<slug:slug>/traces/<str:trace_id>/", views.trace_detail, name="trace"),
    path("p/<slug:slug>/traces/<str:trace_id>/children", views.trace_children, name="trace-children"),
    path("p/<slug:slug>/traces/<str:trace_id>/spans/<str:span_id>", views.span_panel, name="span-panel"),
    path("p/<slug:slug>/agents/", views.agents, name="agents"),
    path("p/<slug:slug>/models/", views.models, name="models"),
    path("p/<slug:slug>/prices/", views.prices, name="prices"),
    path("p/<slug:slug>/prices/add", views.price_add, name="price-add"),
    path("p/<slug:slug>/prices/<int:price_id>/delete", views.price_delete, name="price-delete"),
    path("p/<slug:slug>/settings/", views.settings_page, name="settings"),
    path("p/<slug:slug>/settings/members", views.member_save, name="member-save"),
    path("p/<slug:slug>/settings/members/<int:member_id>/remove", views.member_remove, name="member-remove"),
    path("p/<slug:slug>/settings/keys", views.key_create, name="key-create"),
    path("p/<slug:slug>/settings/keys/<int:key_id>/revoke", views.key_revoke, name="key-revoke"),
]
