"""wecom: app card response codes and other WeCom state

Revision ID: 0007
Revises: 0006
"""

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
