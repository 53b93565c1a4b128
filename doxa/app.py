"""What every command needs: the settings, and the database URL (starting the embedded cluster
when ``DOXA_DATABASE_URL`` is unset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from doxa.errors import BadInput
from doxa.settings import Settings


@dataclass
class App:
    settings: Settings
    _database_url: str | None = field(default=None, init=False)

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    def model_catalog(self):  # -> protocols.modbus.ModelCatalog
        """The built-in meter models plus those of the DOXA_MODBUS_MODELS file (``generic``)."""
        from protocols.modbus import ModelCatalog, ModelConfigError

        path = self.settings.modbus_models
        if not path:
            return ModelCatalog()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"DOXA_MODBUS_MODELS: cannot read {path}: {exc}") from exc
        try:
            return ModelCatalog.from_toml(text)
        except ModelConfigError as exc:
            raise BadInput(f"DOXA_MODBUS_MODELS: {path}: {exc}") from exc

    def embedded_postgres(self):  # -> EmbeddedPostgres; imported lazily to keep --help fast
        from doxa.services.postgres import EmbeddedPostgres

        return EmbeddedPostgres(self.home / "pg")

    def read_database_url(self) -> str:
        """Where reads that may lag go (exports): DOXA_DATABASE_READ_URL, else the primary."""
        return self.settings.database_read_url or self.database_url()

    def database_url(self) -> str:
        """The configured database, or the embedded cluster, started on first use and left
        running for the next command (``doxa services stop`` stops it)."""
        if self._database_url is None:
            if self.settings.database_url:
                self._database_url = self.settings.database_url
            else:
                pg = self.embedded_postgres()
                pg.start()
                self._database_url = pg.url()
        return self._database_url
