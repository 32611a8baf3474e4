"""Every change the local cloud makes to moto, in one list: what moto does, what AWS does, the
patch, where it lives, and the tests that show the AWS behaviour it restores.

moto is pinned to the minor version these were written against (pyproject.toml, `local`
extra): each patch replaces or wraps a moto function by name, so a moto release that renames
or changes one must be met here first. `tests/unit/test_moto_patches.py` holds the registry
to the code: every assignment to a moto attribute in `localcloud/` is a registered patch's
target, and every test a patch names exists.

All are applied in the emulator's process by `emulator_process.run`, before its server answers any
request but the emulator's own provisioning (the last, `follow_live`, right after the server
starts, while every other caller is still held at the gate); none runs in the CLI's process.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MotoPatch:
    name: str
    targets: tuple[str, ...]  # what is replaced, `module.Class.attribute`
    moto_does: str
    aws_does: str
    where: str  # the function that applies it
    tests: tuple[str, ...]  # `path::test` showing the AWS behaviour (fails without the patch)


PATCHES: tuple[MotoPatch, ...] = (
    MotoPatch(
        name="request-path caches",
        targets=("moto.backends.list_of_moto_modules", "moto.core.utils.camelcase_to_underscores",
                 "jsonpath_ng.ext.parse"),
        moto_does="recomputes three pure functions on every request (a directory listing per "
                  "request, a JSONPath parser per delivered event, attribute-name conversion "
                  "28 times per queue read)",
        aws_does="nothing observable: a speed patch only (about a fifth of the emulator's CPU "
                 "per image); it changes no answer",
        where="collections_ops.localcloud.aws.moto_tuning.tune_in_process_moto",
        tests=("tests/unit/test_moto_patches.py::test_the_request_path_caches_change_no_answer",),
    ),
    MotoPatch(
        name="Lambda version numbers are never reused",
        targets=("moto.awslambda.models.LambdaStorage.publish_version",),
        moto_does="numbers a new version len(versions) + 1, so after a prune it gives out a "
                  "number still in use",
        aws_does="numbers versions 1, 2, 3 ... and never gives a number twice",
        where="collections_ops.localcloud.lambda_service.lambda_versions.install",
        tests=("tests/unit/test_lambda_versions.py::test_a_deleted_versions_number_is_not_given_again",
               "tests/unit/test_lambda_versions.py::test_a_function_created_again_numbers_from_one"),
    ),
    MotoPatch(
        name="SQS messages are durable",
        targets=("moto.sqs.models.SQSBackend.send_message", "moto.sqs.models.Queue.add_message",
                 "moto.sqs.models.Queue.delete_message", "moto.sqs.models.SQSBackend.purge_queue"),
        moto_does="keeps messages in memory only: a kill -9 of its process loses every one",
        aws_does="keeps an acknowledged message until it is deleted or expires; an upload's "
                 "notification exists only once its object does",
        where="collections_ops.localcloud.aws.store_messages.install",
        tests=("tests/reliability/test_store_order.py::test_an_upload_keeps_its_object_and_then_its_notification",
               "tests/reliability/test_store_order.py::test_a_crash_before_the_object_is_kept_leaves_no_notification_of_it",
               "tests/reliability/test_store_local_cloud.py::test_odd_keys_are_processed_once_survive_a_kill_9_and_still_verify"),
    ),
    MotoPatch(
        name="one notification per completed multipart upload",
        targets=("moto.s3.models.S3Backend.put_object",
                 "moto.s3.models.S3Backend.complete_multipart_upload",
                 "moto.s3.models.MultipartDict.__delitem__"),
        moto_does="stores a completed upload with put_object, which announces an "
                  "ObjectCreated:Put besides the completion's own event (the pipeline ran "
                  "twice), and forgets the upload before the object is kept",
        aws_does="sends one ObjectCreated:CompleteMultipartUpload; a refused completion can "
                 "be completed again",
        where="collections_ops.localcloud.aws.store_objects.install_notifications",
        tests=("tests/reliability/test_store_objects.py::test_a_multipart_upload_is_announced_once_and_kept_once",
               "tests/reliability/test_store_objects.py::test_a_refused_multipart_completion_leaves_the_upload_open_to_complete_again",
               "tests/reliability/test_store_local_cloud.py::test_a_20_mb_multipart_upload_runs_the_pipeline_once"),
    ),
    MotoPatch(
        name="SSM parameters and CloudWatch Logs events are durable",
        targets=("moto.ssm.models.SimpleSystemManagerBackend.put_parameter",
                 "moto.ssm.models.SimpleSystemManagerBackend.delete_parameter",
                 "moto.ssm.models.SimpleSystemManagerBackend.delete_parameters",
                 "moto.logs.models.LogsBackend.put_log_events",
                 "moto.logs.models.LogsBackend.create_log_stream"),
        moto_does="keeps parameters and log events in memory only",
        aws_does="keeps them (SecureStrings encrypted at rest; log events for the group's "
                 "retention)",
        where="collections_ops.localcloud.aws.store_ssm_logs.install",
        tests=("tests/unit/test_local_store.py::test_a_secure_string_is_never_on_disk_in_clear_and_is_restored",
               "tests/reliability/test_store_parameters.py::test_deleted_parameters_stay_deleted_after_a_restart"),
    ),
    MotoPatch(
        name="the `live` alias decides what runs",
        targets=("moto.awslambda.models.LambdaBackend.create_alias",
                 "moto.awslambda.models.LambdaBackend.update_alias",
                 "moto.awslambda.models.LambdaBackend.publish_version",
                 "moto.awslambda.models.LambdaBackend.delete_function"),
        moto_does="registers functions, versions and aliases but runs no code, and forgets "
                  "them at a restart",
        aws_does="invokes the version the trigger's alias names; published versions and "
                 "where aliases point outlive any restart",
        where="collections_ops.localcloud.lambda_service.watch.follow_live",
        tests=("tests/integration/test_versions.py::test_the_dispatchers_run_the_package_of_the_version_live_points_at",
               "tests/integration/test_versions.py::test_configure_runs_the_same_code_as_the_new_version_and_keeps_it",
               "tests/integration/test_hot_reload.py::test_rollback_runs_the_version_live_points_at_and_rolling_forward_the_newer"),
    ),
    MotoPatch(
        name="IAM identity policies evaluated as AWS does",
        targets=("moto.settings.INITIAL_NO_AUTH_ACTION_COUNT",
                 "moto.iam.access_control.IAMRequestBase.check_action_permitted"),
        moto_does="checks non-S3/SQS actions against resource `*` (no ARN-scoped statement "
                  "matches), fails every identity-policy condition and turns a failed Allow "
                  "into a Deny, and lets the first requests through unchecked",
        aws_does="explicit Deny > an Allow whose action, resource and condition match > "
                 "implicit deny, from the first request",
        where="collections_ops.localcloud.aws.iam.install",
        tests=("tests/integration/test_local_iam.py::test_a_handler_may_do_only_what_its_role_allows",
               "tests/integration/test_local_iam.py::test_removing_a_permission_fails_the_pipeline_with_access_denied_naming_the_action"),
    ),
    MotoPatch(
        name="no shortcut around authorization",
        targets=("moto.core.authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action",
                 "moto.core.authorization.ActionAuthenticatorMixin.PUBLIC_OPERATIONS"),
        moto_does="skips authentication when X-Amz-Target names a Cognito public operation, "
                  "never checks a session token or the request's date, and cannot "
                  "authenticate a presigned URL",
        aws_does="authenticates every request (SigV4 or presigned) and authorizes it against "
                 "its caller's policies",
        where="collections_ops.localcloud.aws.frontdoor.install",
        tests=("tests/integration/test_front_door.py::test_every_shortcut_in_motos_authentication_is_refused_with_403_and_changes_nothing",
               "tests/integration/test_front_door.py::test_a_signed_request_naming_a_public_operation_is_still_checked_against_its_policies",
               "tests/integration/test_front_door.py::test_a_presigned_url_is_authorized_with_its_signers_policies"),
    ),
)
