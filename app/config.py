"""Settings from the environment (prefix GRIDPROOF_) and an optional .env file."""

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDPROOF_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./data/gridproof.db"
    upload_dir: Path = Path("./uploads")
    max_upload_mb: float = Field(default=25, gt=0)
    max_image_pixels: int = Field(default=220_000_000, gt=0)
    max_full_decode_pixels: int = Field(default=60_000_000, gt=0)
    max_photos_per_request: int = 10
    # Largest body that is not multipart (JSON): refused with 413 payload_too_large as it
    # streams in, before the route reads it (app/gate.py).
    max_json_kb: int = Field(default=256, ge=1)
    timezone: str = "Asia/Shanghai"
    issue_code_prefix: str = "JK"
    thumb_px: int = 320
    large_px: int = 1600
    # Where photos are decoded. With image_processes > 0: in a pool of that many processes,
    # shared by every request of the server process (`gridproof serve` sets one per core): each
    # photo goes to the next free process, whichever connection it came on. With 0 (tests,
    # scripts): in the request's own thread, image_workers at a time per process.
    image_processes: int = Field(default=0, ge=0, le=64)
    image_workers: int = Field(default=1, ge=1, le=64)

    # Photo checks (flags); see the README for what each one means.
    flag_device_gps_min_m: float = 100
    flag_device_gps_accuracy_factor: float = 2
    flag_far_from_issue_m: float = 100
    flag_future_minutes: float = 10
    flag_stale_hours: float = 72
    # The zone's bounding area when no grid is imported (with a grid: the grid's extent), as
    # minLon,minLat,maxLon,maxLat in WGS-84; empty: none. A photo whose EXIF position lies
    # outside it, widened by zone_margin_m, is flagged outside_zone and never locates an issue.
    zone_bbox: str = ""
    zone_margin_m: float = Field(default=1000, ge=0)
    # Hamming distance between 64-bit pHashes at or under which two photos count as the same
    # picture. Re-encoded or downscaled copies measure 0–1; a fresh photo of the same scene with
    # 5 % of it changed measures about 6, unrelated scenes 20 or more.
    # At most 5: the similarity index (checks.similar_photos) finds every match up to 5.
    phash_max_distance: int = Field(default=4, ge=0, le=5)
    # ETags of the API also change every this many seconds, because some answers depend on the
    # clock and not only on writes (`overdue`, "due within 24 hours"); 0: only on writes.
    etag_clock_seconds: int = Field(default=60, ge=0)
    # Where originals, derivatives and comparison images are kept (app/services/objects.py):
    # "local" (under upload_dir, the default) or "s3", an S3-compatible object store (MinIO,
    # a cloud's) at s3_endpoint (empty: AWS's own), in s3_bucket under s3_prefix; credentials
    # the usual boto3 way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, a role).
    # Temp files of uploads stay in upload_dir/tmp on each replica.
    storage: Literal["local", "s3"] = "local"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_region: str = ""
    # A request claims the SHA-256s it stores in the database (storage_claims) for at most
    # this long; a claim older than this belongs to a request that died, and is swept.
    claim_ttl_s: float = Field(default=600, gt=0)
    # The server sweeps the uploads folder (what dead requests left, files no photo uses: see
    # app/services/sweep.py) at startup and then every this many seconds; 0: only at startup.
    sweep_interval_s: float = Field(default=300, ge=0)

    # A token stops working this many days after it was last used, and this many days after it
    # was issued whatever its use (401; sign in again).
    token_idle_days: float = Field(default=30, gt=0)
    token_max_days: float = Field(default=180, gt=0)

    # Sign-in throttling (state in the database, so every replica sees it): after this many
    # failures within login_window_s a username (or a client address) waits
    # login_backoff_base_s, doubled with each further failure, at most login_backoff_max_s.
    login_user_failures: int = Field(default=5, ge=1)
    login_ip_failures: int = Field(default=50, ge=1)
    login_window_s: float = Field(default=900, gt=0)
    login_backoff_base_s: float = Field(default=1, gt=0)
    login_backoff_max_s: float = Field(default=900, gt=0)
    # Password hashes (64 MiB of argon2id each) computed at once in a server process.
    login_max_concurrent_hashes: int = Field(default=2, ge=1)

    # Photo uploads (multipart requests) per token: a burst of upload_burst, then one every
    # upload_window_s / upload_burst seconds (429 with Retry-After beyond; state in the database).
    upload_burst: int = Field(default=60, ge=1)
    upload_window_s: float = Field(default=600, gt=0)

    # Ledger exports running at once in this server process, per user and in all (429 beyond).
    exports_per_user: int = Field(default=2, ge=1)
    exports_total: int = Field(default=4, ge=1)

    # Dashboards: the weights of the composite score (relative; see the README, "Dashboards").
    score_weight_closure: float = Field(default=30, ge=0)
    score_weight_on_time_rectification: float = Field(default=30, ge=0)
    score_weight_rework: float = Field(default=30, ge=0)
    score_weight_volume: float = Field(default=10, ge=0)

    # Signs Open311 media URLs; empty: a random one kept in upload_dir/signing.key.
    signing_secret: str = ""
    media_url_ttl_seconds: int = Field(default=86_400, ge=60)
    # The scheme, host and port of media URLs (e.g. https://gridproof.example.cn); empty: the
    # request's own.
    public_base_url: str = ""

    # The Ed25519 key that signs checkpoints of the audit chains (PEM, made at the first start
    # with mode 0600); unset: keys/audit-ed25519.pem beside the upload folder (not in it: the
    # photo store is swept, replicated and served). Never in the repository: keep it where
    # settings say and back it up. Its public key is published (/api/v1/audit/checkpoints).
    audit_key_file: Path | None = None
    # Every chain head not yet signed is signed at each server start and then this often, by
    # a thread of each server process (off: only `gridproof checkpoint` and evidence ZIPs sign).
    checkpoint_interval_hours: float = Field(default=24, gt=0)
    checkpoint_thread: bool = True

    # Webhooks: deliveries are sent by a thread of each server process (see the README).
    webhook_worker: bool = True
    webhook_poll_seconds: float = Field(default=2, gt=0)
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    # The whole delivery (connect, send, the answer to its last byte), however it trickles.
    webhook_deadline_seconds: float = Field(default=30, gt=0)
    webhook_retry_base_seconds: float = Field(default=30, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600, gt=0)
    webhook_retry_hours: float = Field(default=24, gt=0)
    webhook_senders: int = Field(default=4, ge=1, le=64)
    webhook_overdue_scan_seconds: float = Field(default=60, gt=0)
    # Private, loopback and link-local addresses are refused as webhook URLs unless allowed.
    webhook_allow_private: bool = False

    # The dashboard's optional raster tiles (天地图, an intranet tile server) under the grid:
    # a Leaflet URL template ({z}/{x}/{y}, {s}; {key} is replaced by map_tile_key). Empty (the
    # default): no tiles, the grid drawn from our own data is the map, and nothing is fetched
    # from outside. The key is written into the page: use one the tile service binds to a domain.
    map_tile_url: str = ""
    map_tile_key: str = ""
    map_tile_subdomains: str = ""
    map_tile_attribution: str = ""
    # The system the tiles are drawn in: wgs84 (天地图, CGCS2000) or gcj02 (AutoNavi, Tencent).
    map_tile_crs: Literal["wgs84", "gcj02"] = "wgs84"

    @field_validator("zone_bbox")
    @classmethod
    def _bbox(cls, value: str) -> str:
        """Refused at startup rather than at the first upload: minLon,minLat,maxLon,maxLat."""
        if value:
            parts = [float(part) for part in value.split(",")]
            if len(parts) != 4 or not (
                -180 <= parts[0] <= parts[2] <= 180 and -90 <= parts[1] <= parts[3] <= 90
            ):
                raise ValueError("zone_bbox is minLon,minLat,maxLon,maxLat in WGS-84")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        """Keys go under the prefix as a folder: `photos` and `photos/` mean the same."""
        return value.strip("/") + "/" if value.strip("/") else ""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_json_bytes(self) -> int:
        return self.max_json_kb * 1024

    @property
    def max_request_bytes(self) -> int:
        """Largest multipart body: before and after photos at their limit, plus the form."""
        return 2 * self.max_photos_per_request * self.max_upload_bytes + MB

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.upload_dir.parent / "keys" / "audit-ed25519.pem"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    return Settings()
