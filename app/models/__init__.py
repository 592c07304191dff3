"""Every table, imported here so that Alembic and the app see one metadata."""

from app.models.app_secret import AppSecret
from app.models.category import Category
from app.models.change import ChangeCounter
from app.models.checkpoint import AuditCheckpoint
from app.models.event import IssueEvent
from app.models.grid import GridCell, GridImport
from app.models.idempotency import IdempotencyRecord
from app.models.issue import Issue, IssueCodeCounter, IssueStatus
from app.models.open311 import IssueContact
from app.models.org import OrgUnit
from app.models.photo import Photo, PhotoKind
from app.models.ranking_flag import RankingFlagAward
from app.models.storage_claim import StorageClaim
from app.models.throttle import LoginThrottle
from app.models.user import ApiToken, Role, User
from app.models.webhook import WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiToken",
    "AppSecret",
    "AuditCheckpoint",
    "Category",
    "ChangeCounter",
    "GridCell",
    "GridImport",
    "IdempotencyRecord",
    "Issue",
    "IssueCodeCounter",
    "IssueContact",
    "IssueEvent",
    "IssueStatus",
    "LoginThrottle",
    "OrgUnit",
    "Photo",
    "PhotoKind",
    "RankingFlagAward",
    "Role",
    "StorageClaim",
    "User",
    "WebhookDelivery",
    "WebhookSubscription",
]
