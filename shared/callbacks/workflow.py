"""Workflows: the run a task belongs to, and the ``WorkflowFinish`` body of a whole run."""

from __future__ import annotations

from pydantic import Field

from shared.callbacks.objects import CosHeaderList
from shared.callbacks.vendor import ListOf, Text, VendorModel, VendorTime

__all__ = ["WorkflowExecution", "WorkflowRef", "WorkflowTask"]


class WorkflowRef(VendorModel):
    """The workflow run a task belongs to (``JobsDetail/Workflow``)."""

    run_id: Text = None
    workflow_id: Text = None
    workflow_name: Text = None
    name: Text = None  # the node of the workflow that ran this task


class WorkflowTask(VendorModel):
    """One task of a finished workflow run (``WorkflowExecution/Tasks``)."""

    type: Text = None
    name: Text = None
    job_id: Text = None
    state: Text = None
    code: Text = None
    message: Text = None
    create_time: VendorTime = None
    end_time: VendorTime = None
    template_id: Text = None
    template_name: Text = None


class WorkflowExecution(VendorModel):
    """A finished workflow run: the body of a ``WorkflowFinish`` event, kept whole."""

    run_id: Text = None
    workflow_id: Text = None
    workflow_name: Text = None
    state: Text = None
    bucket_id: Text = None
    object: Text = None
    create_time: VendorTime = None
    cos_headers: CosHeaderList = Field(default_factory=list)
    tasks: ListOf[WorkflowTask] = Field(default_factory=list)
