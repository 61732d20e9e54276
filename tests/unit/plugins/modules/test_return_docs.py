"""RETURN documents every key a module returns.

Two views: the returned_keys_are_documented fixture (conftest.py) checks the keys of every
exit_json/fail_json a unit test reaches at run time (including keys built in module_utils);
this file walks each module's source for every path, reached by a test or not: keyword
arguments of exit_json/fail_json and of the collection's exit helpers, and the literal keys put
into a dict that is passed to them with ``**`` (``result["k"] = ...``, ``result = {"k": ...}``,
``dict(k=...)``, ``result.update(k=...)``, ``result.setdefault("k", ...)``).
"""
import ast
import glob
import os

import pytest
import yaml

# as in conftest.py: ansible-core's and amazon.aws's own keys (fail_json_aws adds the boto error details)
COMMON_RESULT_KEYS = {"changed", "failed", "msg", "diff", "warnings", "deprecations", "invocation", "skipped",
                      "exception", "error", "response_metadata", "boto3_version", "botocore_version"}

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULES = sorted(glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
# calls that end the module with the dict they are given (name -> position of the result dict)
EXITS = {"exit_json": None, "fail_json": None, "fail_json_aws": None, "finish_evaluation": 1}


def call_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def dict_keys(node):
    """Literal keys of {..} or dict(..)."""
    if isinstance(node, ast.Dict):
        return {key.value for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    if isinstance(node, ast.Call) and call_name(node) == "dict":
        return {keyword.arg for keyword in node.keywords if keyword.arg}
    return set()


def returned_keys(source):
    tree = ast.parse(source)
    keys, carriers = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) in EXITS:
            for keyword in node.keywords:
                if keyword.arg is None and isinstance(keyword.value, ast.Name):
                    carriers.add(keyword.value.id)
                elif keyword.arg:
                    keys.add(keyword.arg)
            position = EXITS[call_name(node)]
            if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Name):
                carriers.add(node.args[position].id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in carriers:
                    keys |= dict_keys(node.value)
                if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                        and target.value.id in carriers and isinstance(target.slice, ast.Constant)):
                    keys.add(target.slice.value)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in carriers):
            if node.func.attr == "update":
                keys |= {keyword.arg for keyword in node.keywords if keyword.arg}
                for arg in node.args:
                    keys |= dict_keys(arg)
            if node.func.attr == "setdefault" and node.args and isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
    return keys


def module_docs(path):
    tree = ast.parse(open(path).read())
    docs = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant):
            docs[node.targets[0].id] = node.value.value
    return docs


@pytest.mark.parametrize("path", MODULES, ids=lambda path: os.path.basename(path)[:-3])
def test_every_returned_key_is_in_return(path):
    documented = set(yaml.safe_load(module_docs(path)["RETURN"]) or {})
    found = returned_keys(open(path).read())
    assert found, "the walker found no returned key: it no longer understands this module"
    undocumented = found - COMMON_RESULT_KEYS - documented
    assert not undocumented, "returned but not in RETURN: %s" % sorted(undocumented)


def test_the_walker_sees_keys_set_on_a_path_no_test_reaches():
    source = ("def f(module, result):\n"
              "    if module.params['x']:\n"
              "        result['late'] = True\n"
              "    finish_evaluation(module, result, {})\n"
              "def g(module):\n"
              "    out = dict(a=1)\n"
              "    out.update(b=2)\n"
              "    module.exit_json(c=3, **out)\n")
    assert returned_keys(source) == {"late", "a", "b", "c"}
