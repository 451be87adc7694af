"""A template as CloudFormation creates it for given parameter values: resources and outputs
whose condition is false left out, each Fn::If replaced by its chosen branch, AWS::NoValue
removed. Every other intrinsic ({"Ref": "VerdictTable"}, Fn::Sub...) is kept as written, so
tests compare against the template's own expressions.

The condition functions CloudFormation allows (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
Condition) are evaluated over parameters and pseudo parameters, with the Fn::Join,
Fn::Select and Fn::Split they may use. Anything else in a condition is a KeyError: a new
construct must be taught here rather than guessed.
"""

from __future__ import annotations

from typing import Any

PSEUDO = {"AWS::AccountId": "123456789012", "AWS::Region": "us-east-1",
          "AWS::Partition": "aws", "AWS::StackName": "ecr-scan-gatekeeper"}
_NO_VALUE = object()


def render(template: dict[str, Any], parameters: dict[str, Any] | None = None,
           pseudo: dict[str, str] | None = None) -> dict[str, Any]:
    """``template`` (long-form intrinsics) as deployed with ``parameters`` (others at their
    defaults) in the account and Region of ``pseudo`` (see PSEUDO)."""
    values: dict[str, Any] = {**PSEUDO, **(pseudo or {})}
    for name, spec in template.get("Parameters", {}).items():
        value = (parameters or {}).get(name, spec.get("Default"))
        if value is None:
            raise KeyError(f"parameter {name} has no default: give it a value")
        values[name] = (str(value).split(",") if spec["Type"] == "CommaDelimitedList"
                        else value)
    decided: dict[str, bool] = {}

    def condition(name: str) -> bool:
        if name not in decided:
            decided[name] = bool(evaluate(template["Conditions"][name]))
        return decided[name]

    def evaluate(node: Any) -> Any:
        if isinstance(node, list):
            return [evaluate(item) for item in node]
        if not isinstance(node, dict):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            return values[argument]
        if function == "Condition":
            return condition(argument)
        operations = {
            "Fn::Equals": lambda a: evaluate(a[0]) == evaluate(a[1]),
            "Fn::Not": lambda a: not evaluate(a[0]),
            "Fn::And": lambda a: all(evaluate(item) for item in a),
            "Fn::Or": lambda a: any(evaluate(item) for item in a),
            "Fn::Join": lambda a: a[0].join(str(item) for item in evaluate(a[1])),
            "Fn::Select": lambda a: evaluate(a[1])[int(a[0])],
            "Fn::Split": lambda a: str(evaluate(a[1])).split(a[0]),
        }
        return operations[function](argument)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, when_true, when_false = node["Fn::If"]
                return strip(when_true if condition(name) else when_false)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            kept = {key: strip(value) for key, value in node.items()}
            return {key: value for key, value in kept.items() if value is not _NO_VALUE}
        if isinstance(node, list):
            return [item for item in (strip(value) for value in node) if item is not _NO_VALUE]
        return node

    def present(section: str) -> dict[str, Any]:
        return {key: strip(value) for key, value in template.get(section, {}).items()
                if "Condition" not in value or condition(value["Condition"])}

    return {**template, "Resources": present("Resources"), "Outputs": present("Outputs")}
