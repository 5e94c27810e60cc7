"""What a document may look like: strawberry's token limit and graphql-core's
validation rules (depth, aliases, introspection in production).

Built once per schema: ``ValidationCache`` keys on the rule classes, and a fresh
class per request would never hit.
"""

from __future__ import annotations

from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from query_api.settings import Settings


def validation_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_depth, None),
        alias_rule(settings.max_aliases),
    ]
    if settings.production:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)
